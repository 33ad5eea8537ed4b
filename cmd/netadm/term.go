package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Everything netadm prints for a terminal goes through termSafe: labels,
// project ids, host names and the manager's error messages come from callers
// of the manager's RPC, and a control character in one of them would
// otherwise reach the operator's terminal, where ESC sequences can clear the
// screen or rewrite it, and \r, \n or \t can forge a table row or column.
// JSON output needs none of this: encoding/json escapes control characters.

// termSafe returns s with every rune that a terminal would not print as
// itself written as a Go escape: C0 and C1 control characters and DEL (\x1b,
// \r, \n, \t, \u009b), other unprintable runes such as bidirectional
// overrides and zero-width characters (\u202e), and invalid UTF-8 (\xff). A
// backslash is doubled, so that an escape in a label or id is never
// ambiguous with a backslash the caller wrote: the result reads back as a Go
// string literal. Printable text, non-ASCII letters and spaces included, is
// unchanged.
func termSafe(s string) string { return escape(s, true) }

// termSafeMessage is termSafe for error messages, which quote values with
// %q themselves: backslashes stay as they are, so what is already escaped is
// not escaped twice.
func termSafeMessage(s string) string { return escape(s, false) }

func escape(s string, backslash bool) string {
	if !needsEscape(s, backslash) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\' && backslash:
			b.WriteString(`\\`)
		case printable(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r) // '\x1b', '\n', '\u202e', ...
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

func printable(r rune) bool { return r == ' ' || strconv.IsPrint(r) && r != utf8.RuneError }

func needsEscape(s string, backslash bool) bool {
	for _, r := range s {
		if r == '\\' && backslash || !printable(r) {
			return true
		}
	}
	return false
}

// table prints rows in aligned columns; every cell goes through termSafe.
type table struct{ w *tabwriter.Writer }

// newTable starts a table on w with the given column headers.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(toAny(header)...)
	}
	return t
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// row prints one row; each cell is formatted with fmt.Sprint.
func (t *table) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(t.w, "\t")
		}
		io.WriteString(t.w, termSafe(fmt.Sprint(c)))
	}
	io.WriteString(t.w, "\n")
}

func (t *table) flush() error { return t.w.Flush() }

// printf prints a line for the terminal; every string argument goes through
// termSafe and every error through termSafeMessage. The format is netadm's
// own.
func printf(w io.Writer, format string, args ...any) {
	safe := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			safe[i] = termSafe(v)
		case error:
			safe[i] = termSafeMessage(v.Error())
		case fmt.Stringer:
			safe[i] = termSafe(v.String())
		default:
			safe[i] = a
		}
	}
	fmt.Fprintf(w, format, safe...)
}
