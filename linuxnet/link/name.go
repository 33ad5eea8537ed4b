package link

import "novanet/ifname"

// MaxNameLen is the longest interface name Linux accepts (IFNAMSIZ - 1).
const MaxNameLen = ifname.MaxLen

// ErrInvalidName is returned (wrapped) for an interface name the kernel
// would reject or that could be confused with a path.
var ErrInvalidName = ifname.ErrInvalid

// ValidateName reports whether name is usable as a Linux interface name:
// 1 to 15 bytes, no '/', ':', '%', whitespace or control characters, and
// not "." or "..". The error names the bad value.
func ValidateName(name string) error { return ifname.Validate(name) }
