package rpc

import (
	"strings"
	"time"
)

// Request headers a caller may set on any manager request; the Go client
// sets both on every call. docs/rpc.md, "Request ids and deadlines".
const (
	// HeaderRequestID names one logical request across its retries: a
	// replica that already answered (method, id) answers the same again
	// instead of repeating the work. 1 to MaxRequestIDBytes of letters,
	// digits and "-_.:"; a UUID is a good choice.
	HeaderRequestID = "Novanet-Request-Id"
	// HeaderDeadline is when the caller stops waiting for this attempt, in
	// RFC 3339 with fractional seconds, e.g. 2026-12-01T20:15:03.25Z. A
	// replica does not start a request whose deadline has passed, and
	// cancels one still running at it.
	HeaderDeadline = "Novanet-Deadline"
	// MaxRequestIDBytes bounds a request id.
	MaxRequestIDBytes = 128
)

// ParseRequestID checks a Novanet-Request-Id header value; "" is no id.
func ParseRequestID(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if len(s) > MaxRequestIDBytes {
		return "", Errorf(CodeInvalidArgument, "header %s: %d bytes, more than %d", HeaderRequestID, len(s), MaxRequestIDBytes)
	}
	if i := strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r))
	}); i >= 0 {
		return "", Errorf(CodeInvalidArgument, "header %s %q: byte %d is not a letter, digit, '-', '_', '.' or ':'", HeaderRequestID, quoteShort(s), i)
	}
	return s, nil
}

// ParseDeadline checks a Novanet-Deadline header value; "" is none (the
// zero time).
func ParseDeadline(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || len(s) > 64 {
		return time.Time{}, Errorf(CodeInvalidArgument, "header %s %q: want an RFC 3339 time such as 2026-12-01T20:15:03.25Z", HeaderDeadline, quoteShort(s))
	}
	return t, nil
}

// FormatDeadline writes t as a Novanet-Deadline header value, in UTC to
// the millisecond.
func FormatDeadline(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
