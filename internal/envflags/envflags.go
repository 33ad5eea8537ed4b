// Package envflags lets every command-line flag be set from the
// environment: --database-url from NOVANET_DATABASE_URL, and so on. A flag
// given on the command line wins over the environment.
package envflags

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Name returns the environment variable for a flag: prefix + upper snake case.
func Name(prefix, flag string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Apply sets each flag of fs not given on the command line from its
// environment variable, if set, even to the empty string (so that
// NOVANET_HTTP_LISTEN= turns HTTP off as --http-listen= does). lookup is
// os.LookupEnv or a stand-in. An unparsable value is an error naming the
// variable and the value.
func Apply(fs *pflag.FlagSet, prefix string, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		env := Name(prefix, f.Name)
		v, ok := lookup(env)
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("environment %s=%q: %w", env, v, serr)
		}
	})
	return err
}

// Annotate appends "(env NAME)" to each flag's usage so --help shows it.
func Annotate(fs *pflag.FlagSet, prefix string) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && !strings.Contains(f.Usage, "(env ") {
			f.Usage += " (env " + Name(prefix, f.Name) + ")"
		}
	})
}
