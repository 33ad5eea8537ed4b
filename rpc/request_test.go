package rpc

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRequestHeaders(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"6f1c3c1e-3f7a-4c2b-9d61-1f0e5c6b7a80", ""},
		{"compute-1:boot:42_a.b", ""},
		{"a b", "byte 1 is not a letter"},
		{"a\x00", "byte 1 is not a letter"},
		{"é", "byte 0 is not a letter"},
		{strings.Repeat("a", MaxRequestIDBytes+1), "more than 128"},
	} {
		id, err := ParseRequestID(tc.in)
		if tc.want == "" {
			if err != nil || id != tc.in {
				t.Errorf("ParseRequestID(%q) = %q, %v", tc.in, id, err)
			}
		} else if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRequestID(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	d := time.Date(2026, 12, 1, 20, 15, 3, 250_000_000, time.UTC)
	if s := FormatDeadline(d.In(time.FixedZone("x", 3600))); s != "2026-12-01T20:15:03.250Z" {
		t.Errorf("FormatDeadline = %q", s)
	}
	for _, s := range []string{"2026-12-01T20:15:03.25Z", "2026-12-01T21:15:03.25+01:00", "2026-12-01T20:15:03.250000000Z"} {
		if got, err := ParseDeadline(s); err != nil || !got.Equal(d) {
			t.Errorf("ParseDeadline(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"tomorrow", "1764620103250", "2026-12-01 20:15:03Z"} {
		if _, err := ParseDeadline(s); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseDeadline(%q) = %v, want invalid_argument", s, err)
		}
	}
}

// FuzzRequestHeaders: every header value is accepted or refused with
// invalid_argument; what is accepted survives a round trip.
func FuzzRequestHeaders(f *testing.F) {
	for _, s := range []string{"", "6f1c3c1e-3f7a-4c2b-9d61-1f0e5c6b7a80", "a b", "2026-12-01T20:15:03.25Z", "9999-12-31T23:59:59-01:00",
		"2026-12-01T21:15:03+01:00", "9999-12-31T23:59:59.999999999Z", "0000-01-01T00:00:00Z", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseRequestID(s)
		if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("ParseRequestID(%q): %v", s, err)
		}
		if err == nil && (id != s || len(id) > MaxRequestIDBytes) {
			t.Fatalf("ParseRequestID(%q) = %q", s, id)
		}
		d, err := ParseDeadline(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ParseDeadline(%q): %v", s, err)
			}
			return
		}
		if s == "" {
			if !d.IsZero() {
				t.Fatalf("ParseDeadline(\"\") = %v", d)
			}
			return
		}
		if u := d.UTC(); u.Year() < 1 || u.Year() > 9999 {
			return // RFC 3339 writes only four-digit years
		}
		again, err := ParseDeadline(FormatDeadline(d))
		if err != nil || !again.Equal(d.Truncate(time.Millisecond)) && !again.Equal(d.UTC().Truncate(time.Millisecond)) {
			t.Fatalf("ParseDeadline(FormatDeadline(%v)) = %v, %v", d, again, err)
		}
	})
}
