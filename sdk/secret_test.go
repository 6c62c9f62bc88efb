package sdk_test

import (
	"slices"
	"testing"

	"github.com/tracehop/tracehop/sdk"
)

func TestSecretKeys(t *testing.T) {
	type auth struct {
		License sdk.Secret `json:"license"`
		User    string     `json:"user"`
	}
	type config struct {
		Endpoint string                `json:"endpoint"`
		DSN      sdk.Secret            `json:"dsn"`
		Auth     *auth                 `json:"auth"`
		Headers  map[string]sdk.Secret `json:"headers"`
		Hidden   sdk.Secret            `json:"-"`
	}
	got := sdk.SecretKeys(&config{})
	want := []string{"dsn", "auth.license", "headers.*"}
	if !slices.Equal(got, want) {
		t.Fatalf("SecretKeys = %v, want %v", got, want)
	}
}
