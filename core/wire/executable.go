package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// BinaryPrefix is the prefix of every driver executable's name: driver
// "zipkin" is the program tracehop-driver-zipkin.
const BinaryPrefix = "tracehop-driver-"

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ValidateName checks that name can name a driver executable
// (BinaryPrefix+name); it keeps a config from pointing the search outside
// its directories.
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("%q is not a driver name: use lowercase letters, digits, '-' and '_' (the executable is %sNAME)", name, BinaryPrefix)
	}
	return nil
}

// ParseChecksum decodes a "sha256:HEX" pin of a driver executable
// (tracing.driver.checksum) into the digest the host compares.
func ParseChecksum(pin string) ([]byte, error) {
	hexsum, ok := strings.CutPrefix(pin, "sha256:")
	if !ok {
		return nil, fmt.Errorf("checksum %q must start with \"sha256:\" (get it with: sha256sum BINARY)", pin)
	}
	sum, err := hex.DecodeString(hexsum)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("checksum %q must be sha256: followed by 64 hex digits", pin)
	}
	return sum, nil
}
