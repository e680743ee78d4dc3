// Command clearance is the Clearance broker's one binary: it parses the
// command line, builds the parts and runs them. Each subcommand lives in its
// own file; this file only dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/config"
)

// command is one subcommand: its one-line summary and its entry point. run
// gets the arguments after the subcommand name and returns the exit code.
type command struct {
	summary string
	run     runFunc
}

// runFunc is a command's or a subcommand's entry point.
type runFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) int

func commands() map[string]command {
	return map[string]command{
		"audit":      {"verify, query, export or archive the audit log", runAudit},
		"check":      {"decide one request (or a JSON array of them) offline against a registry", runCheck},
		"dev":        {"run everything embedded (NATS, SQLite, dev key ring, sample partner) for a first transfer", runDev},
		"serve":      {"run the broker against external NATS, Postgres and Vault (--config FILE)", runServe},
		"registry":   {"lint or apply a registry directory (policy as code)", runRegistry},
		"deadletter": {"list dead letters (never their content) or replay one under a new request id", runDeadLetter},
		"report":     {"Art. 30 records of processing (ropa) or a what-if of a proposed registry", runReport},
		"keys":       {"rewrap the subject keys under the latest Vault key version, before older ones are retired", runKeys},
		"token":      {"mint a compliance API/console token from the dev issuer (--role viewer|officer|admin)", runToken},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "clearance: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: clearance <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'clearance <command> -h' for a command's flags.")
}

// subcommands runs the subcommand of command name that args[0] names, from
// subs; with none or an unknown one it prints usage and returns 2, for -h 0.
func subcommands(ctx context.Context, name string, subs map[string]runFunc, usage func(), args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage()
		return 2
	}
	if run, ok := subs[args[0]]; ok {
		return run(ctx, args[1:], stdout, stderr)
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage()
		return 0
	}
	fmt.Fprintf(stderr, "clearance %s: unknown subcommand %q\n", name, args[0])
	usage()
	return 2
}

// parseFlags parses args into fs for the command cmd ("clearance audit
// verify"): ok is false when the command is to stop with code (0 for -h, 2
// for a bad flag or an argument left over).
func parseFlags(fs *flag.FlagSet, args []string, cmd string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2, false
	}
	return 0, true
}

// loadConfig reads and validates the broker configuration at path for the
// command cmd ("clearance registry apply"); on a problem it prints every
// one and returns nil and exit code 2.
func loadConfig(cmd, path string, stderr io.Writer) (*config.Config, int) {
	cfg, err := config.Load(path)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration %s:\n", cmd, path)
		for _, p := range agreements.Problems(err) {
			fmt.Fprintln(stderr, "  -", p)
		}
		return nil, 2
	}
	return cfg, 0
}
