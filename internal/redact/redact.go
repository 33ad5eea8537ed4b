// Package redact hides passwords in the URLs and connection strings that
// novanet's binaries log and print: NATS server lists and PostgreSQL URLs
// or key=value connection strings.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces a password.
const Mask = "xxxxx"

// dsnPassword matches password=... in a key=value connection string
// (quoted or not).
var dsnPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// URL returns s with every password masked: the user information of each
// URL of a comma-separated list (nats://u:p@a,nats://u:p@b), a password
// query parameter (postgres://h/db?password=p), and password=... in a
// key=value connection string. A token given as the user name alone
// (nats://token@host) is masked too. Text that is no URL is returned with
// password=... masked only.
func URL(s string) string {
	if !strings.Contains(s, "://") {
		return dsnPassword.ReplaceAllString(s, "${1}"+Mask)
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = one(p)
	}
	return strings.Join(parts, ",")
}

func one(s string) string {
	trimmed := strings.TrimSpace(s)
	u, err := url.Parse(trimmed)
	if err != nil {
		// Unparsable: mask everything between :// and the last @.
		if i, j := strings.Index(trimmed, "://"), strings.LastIndex(trimmed, "@"); i >= 0 && j > i {
			return trimmed[:i+3] + Mask + trimmed[j:]
		}
		return dsnPassword.ReplaceAllString(trimmed, "${1}"+Mask)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Mask)
		} else if !strings.HasPrefix(u.Scheme, "postgres") {
			// nats://TOKEN@host: the user name is the secret.
			u.User = url.User(Mask)
		}
	}
	q := u.Query()
	for k := range q {
		if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
			q.Set(k, Mask)
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}
