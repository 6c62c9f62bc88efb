package sdk_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracehop/tracehop/sdk"
)

type testConfig struct {
	Timeout sdk.Duration `json:"timeout"`
	Token   sdk.Secret   `json:"token"`
	Count   int          `json:"count"`
	Nested  struct {
		Flag bool `json:"flag"`
	} `json:"nested"`
}

func TestDecodeConfigNamesTheKey(t *testing.T) {
	cases := map[string]string{
		`{"timeout": "soon"}`:             `timeout: expected a duration such as "5s" or "250ms", got "soon"`,
		`{"timeout": 5}`:                  `timeout: expected a duration such as "5s" or "250ms", got 5`,
		`{"count": "many"}`:               `count: expected a whole number, got string`,
		`{"token": 42}`:                   `token: expected a string`,
		`{"nested": {"flag": "yes"}}`:     `nested.flag: expected true or false, got string`,
		`{"colour": 1}`:                   `colour: unknown key (valid keys: count, nested, timeout, token)`,
		`[1]`:                             `config: must be a map of settings, got array`,
		`{"timeout": "5s", "count": 2, }`: `config is not valid JSON`,
	}
	for in, want := range cases {
		var c testConfig
		err := sdk.DecodeConfig([]byte(in), &c)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", in, err, want)
		}
	}
	var c testConfig
	if err := sdk.DecodeConfig([]byte(`{"timeout": "250ms", "token": "s3cret"}`), &c); err != nil || time.Duration(c.Timeout) != 250*time.Millisecond || c.Token.Value() != "s3cret" {
		t.Fatalf("%+v %v", c, err)
	}
	if s := c.Token.String(); s != "[REDACTED]" {
		t.Errorf("a secret prints as %q", s)
	}
}

// Every problem at once, each with its key, and the nearest valid key for
// a typo.
func TestDecodeConfigReportsEveryProblem(t *testing.T) {
	var c testConfig
	err := sdk.DecodeConfig([]byte(`{"timout": "5s", "count": "x", "nested": {"flg": true}}`), &c)
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *sdk.ConfigError", err)
	}
	want := []sdk.ConfigProblem{
		{Key: "count", Message: "expected a whole number, got string"},
		{Key: "nested.flg", Message: `unknown key (did you mean "flag"? valid keys: flag)`},
		{Key: "timout", Message: `unknown key (did you mean "timeout"? valid keys: count, nested, timeout, token)`},
	}
	if !slices.Equal(ce.Problems, want) {
		t.Fatalf("problems:\n%q\nwant:\n%q", ce.Problems, want)
	}
}
