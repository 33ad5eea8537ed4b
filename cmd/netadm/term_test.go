package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"novanet/internal/testenv"
	"novanet/manager"
)

func TestTermSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"private_0", "private_0"},
		{"web servers", "web servers"},
		{"réseau-é", "réseau-é"},
		{"", ""},
		{"a\x1b[2Jb", `a\x1b[2Jb`},
		{"x\r\ny\tz", `x\r\ny\tz`},
		{"del\x7f", `del\x7f`},
		{"nul\x00", `nul\x00`},
		{"c1\u009b2J", `c1\u009b2J`},
		{"bidi\u202eevil", `bidi\u202eevil`},
		{"zw\u200bsp", `zw\u200bsp`},
		{"bad\xffutf8", `bad\xffutf8`},
		{`back\slash`, `back\\slash`},
		{`\x1b`, `\\x1b`}, // a caller's literal backslash never looks like an escape
		{"nbsp\u00a0", "nbsp\\u00a0"},
	} {
		if got := termSafe(tc.in); got != tc.want {
			t.Errorf("termSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// terminalClean fails unless out holds nothing a terminal would act on but
// the newlines ending its lines.
func terminalClean(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s: invalid UTF-8 in %q", what, out)
	}
	for _, r := range out {
		if r != '\n' && !printable(r) {
			t.Errorf("%s: printed %q raw in %q", what, r, out)
			return
		}
	}
}

// TestHostileStrings creates a network whose label, and a project whose id,
// would clear the screen and forge a table row if printed raw, and checks
// that every table, show and error output of netadm prints them escaped.
func TestHostileStrings(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	const (
		label   = "evil\x1b[2J\r\n99\t00000000-0000-0000-0000-000000000000\tforged\t10.9.9.0/24"
		project = "p\x1b]0;owned\x07\r\nq"
	)
	wantLabel := termSafe(label)
	mustNetadm(t, env, "network", "create", "10.0.0.0/28", "1", "16", "--label", label, "--project", project)

	out := mustNetadm(t, env, "network", "list")
	terminalClean(t, "network list", out)
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 2 {
		t.Errorf("network list printed %d lines for one network:\n%s", len(lines), out)
	}
	if !strings.Contains(out, wantLabel) || !strings.Contains(out, termSafe(project)) {
		t.Errorf("network list does not show the escaped label %s and project %s:\n%s", wantLabel, termSafe(project), out)
	}
	if strings.Contains(out, "forged") && !strings.Contains(out, `\tforged`) {
		t.Errorf("network list let the label forge a column:\n%s", out)
	}

	out = mustNetadm(t, env, "network", "show", "10.0.0.0/28")
	terminalClean(t, "network show", out)
	if !strings.Contains(out, "label") || !strings.Contains(out, wantLabel) {
		t.Errorf("network show does not show the escaped label:\n%s", out)
	}

	out = mustNetadm(t, env, "fixed", "list", "--all")
	terminalClean(t, "fixed list", out)
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 17 {
		t.Errorf("fixed list printed %d lines for 16 addresses:\n%s", len(lines), out)
	}

	// The manager's errors name existing networks by label, unquoted.
	code, out, errs := netadm(t, env, "network", "create", "10.0.0.0/24", "1", "16")
	if code != 1 || out != "" || !strings.Contains(errs, "overlaps existing network "+termSafeMessage(label)) {
		t.Errorf("network create over the hostile network: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	terminalClean(t, "error", errs)
	// Errors that already quote the value (%q) are not escaped twice.
	code, _, errs = netadm(t, env, "floating", "allocate", "--project", project)
	if code != 1 || !strings.Contains(errs, `project_id "p\x1b]0;owned\a\r\nq"`) {
		t.Errorf("floating allocate for a hostile project: exit %d, stderr %q", code, errs)
	}

	out = mustNetadm(t, env, "network", "delete", "10.0.0.0/28")
	terminalClean(t, "network delete", out)
	if !strings.Contains(out, wantLabel) {
		t.Errorf("network delete printed %q", out)
	}
}

func TestTableEscapesCells(t *testing.T) {
	var b bytes.Buffer
	tb := newTable(&b, "A", "B")
	tb.row("x\ty", 1)
	tb.row("\r\n", "z")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	want := "A     B\nx\\ty  1\n\\r\\n  z\n"
	if b.String() != want {
		t.Errorf("table printed %q, want %q", b.String(), want)
	}
}

// FuzzTermSafe checks that termSafe's output holds nothing a terminal acts
// on, is valid UTF-8, and loses nothing: it reads back, as a Go string
// literal, to exactly its input.
func FuzzTermSafe(f *testing.F) {
	for _, s := range []string{"private_0", "a\x1b[2Jb", "x\r\ny\tz", "\xff\xfe", `\x1b`, "\u202e", "é\u0085", "\"'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := termSafe(s)
		if !utf8.ValidString(out) {
			t.Fatalf("termSafe(%q) = %q: invalid UTF-8", s, out)
		}
		for _, r := range out {
			if !printable(r) {
				t.Fatalf("termSafe(%q) = %q: holds %q", s, out, r)
			}
		}
		back, err := strconv.Unquote(`"` + strings.ReplaceAll(out, `"`, `\"`) + `"`)
		if err != nil || back != s {
			t.Fatalf("termSafe(%q) = %q reads back as %q (%v)", s, out, back, err)
		}
		msg := termSafeMessage(s)
		for _, r := range msg {
			if !printable(r) {
				t.Fatalf("termSafeMessage(%q) = %q: holds %q", s, msg, r)
			}
		}
	})
}
