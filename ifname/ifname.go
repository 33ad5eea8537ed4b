// Package ifname validates Linux network interface names before they reach
// the kernel or the database.
package ifname

import (
	"errors"
	"fmt"
	"unicode"
)

// MaxLen is the longest interface name Linux accepts (IFNAMSIZ - 1).
const MaxLen = 15

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid interface name")

// Validate reports whether name can be a Linux interface name: 1 to 15
// bytes, not "." or "..", and no '/', ':', whitespace or control characters.
func Validate(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalid)
	case len(name) > MaxLen:
		return fmt.Errorf("%w %q: longer than %d bytes", ErrInvalid, name, MaxLen)
	case name == "." || name == "..":
		return fmt.Errorf("%w %q", ErrInvalid, name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r == '%' || unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII {
			return fmt.Errorf("%w %q: character %q not allowed", ErrInvalid, name, r)
		}
	}
	return nil
}
