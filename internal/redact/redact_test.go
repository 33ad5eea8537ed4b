package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:s3cret@n1:4222", "nats://alice:xxxxx@n1:4222"},
		{"nats://alice:s3cret@n1:4222,nats://bob:hunter2@n2:4222", "nats://alice:xxxxx@n1:4222,nats://bob:xxxxx@n2:4222"},
		{"nats://mytoken@n1:4222", "nats://xxxxx@n1:4222"},
		{"tls://u:p%40ss@n1:4222", "tls://u:xxxxx@n1:4222"},
		{"postgres://novanet:novanet@127.0.0.1:5439/novanet?sslmode=disable", "postgres://novanet:xxxxx@127.0.0.1:5439/novanet?sslmode=disable"},
		{"postgres://novanet@db/novanet", "postgres://novanet@db/novanet"},
		{"postgres://db/novanet?user=n&password=pw", "postgres://db/novanet?password=xxxxx&user=n"},
		{"host=db user=novanet password=pw dbname=novanet", "host=db user=novanet password=xxxxx dbname=novanet"},
		{"host=db password='p w' dbname=novanet", "host=db password=xxxxx dbname=novanet"},
		{"nats://u:p@bad host:1", "nats://xxxxx@bad host:1"},
	} {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzURL(f *testing.F) {
	f.Add("nats://alice:s3cret@n1:4222,nats://b:s3cret@n2")
	f.Add("host=db password=s3cret")
	f.Add("postgres://u:s3cret@h/db?password=s3cret")
	f.Fuzz(func(t *testing.T, s string) {
		// A password made of letters that appears once, after user: and
		// before @, never survives.
		in := "nats://user:" + "Zq9s3cretZq9" + "@" + s
		if strings.Contains(s, "Zq9") || strings.ContainsAny(s, "@/?#") {
			return
		}
		if out := URL(in); strings.Contains(out, "Zq9s3cretZq9") {
			t.Errorf("URL(%q) = %q keeps the password", in, out)
		}
	})
}
