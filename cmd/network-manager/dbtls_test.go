package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"novanet/internal/pgtest"
	"novanet/internal/testcerts"
)

// TestDatabaseVerifyFull runs the manager against a PostgreSQL server that
// accepts TCP connections over TLS only, with a certificate for localhost
// from a CA made here: with sslmode=verify-full and that CA as sslrootcert
// it migrates, serves and is ready over TLS; a host name the certificate
// does not name, another CA, or no TLS at all is refused.
func TestDatabaseVerifyFull(t *testing.T) {
	ca, other := testcerts.NewCA(t, "novanet-test"), testcerts.NewCA(t, "some-other")
	caFile, otherFile := ca.File, other.File
	certFile, keyFile := ca.IssueServer(t, "localhost")
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := pgtest.StartTCP(t, pgtest.Options{TLSCertPEM: certPEM, TLSKeyPEM: keyPEM})
	ctx := context.Background()
	if _, err := s.CreateDatabase(ctx, "novanet_tls"); err != nil {
		t.Fatal(err)
	}
	dbURL := func(host, mode, rootCert string) string {
		u := fmt.Sprintf("postgres://postgres@%s:%d/novanet_tls?sslmode=%s", host, s.Port(), mode)
		if rootCert != "" {
			u += "&sslrootcert=" + rootCert
		}
		return u
	}
	good := dbURL("localhost", "verify-full", caFile)

	pool, err := openPool(ctx, options{databaseURL: good})
	if err != nil {
		t.Fatalf("verify-full with the server's CA: %v", err)
	}
	var ssl bool
	var version string
	err = pool.QueryRow(ctx, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version)
	pool.Close()
	if err != nil || !ssl {
		t.Fatalf("connection over TLS: ssl=%v %q (%v)", ssl, version, err)
	}
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"migrate", "version"}, &out, &errb, env(map[string]string{"NOVANET_DATABASE_URL": good}), nil); code != 0 {
		t.Fatalf("migrate version over verify-full: %d %s", code, errb.String())
	}
	srv := serve(t, map[string]string{"NOVANET_DATABASE_URL": good},
		"--embedded-nats-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	if code, body := get(t, "http://"+srv.httpAddr.String()+"/readyz"); code != 200 {
		t.Errorf("/readyz over verify-full = %d %q", code, body)
	}

	for _, tc := range []struct {
		what, url, want string
	}{
		{"a host name the certificate does not name", dbURL("127.0.0.1", "verify-full", caFile), "x509: cannot validate certificate for 127.0.0.1"},
		{"a certificate from another CA", dbURL("localhost", "verify-full", otherFile), "x509: certificate signed by unknown authority"},
		{"no TLS", dbURL("localhost", "disable", ""), "no encryption"},
	} {
		if pool, err := openPool(ctx, options{databaseURL: tc.url}); err == nil {
			pool.Close()
			t.Errorf("%s: connected", tc.what)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.what, err, tc.want)
		}
		errb.Reset()
		code := run(ctx, []string{"serve", "--embedded-nats-listen", "127.0.0.1:0", "--http-listen", ""}, io.Discard, &errb,
			env(map[string]string{"NOVANET_DATABASE_URL": tc.url, "NOVANET_CREDS_DIR": t.TempDir()}), nil)
		if code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("serve with %s: exit %d %q, want %q", tc.what, code, errb.String(), tc.want)
		}
	}
}
