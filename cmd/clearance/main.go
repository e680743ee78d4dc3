// Command clearance is the Clearance broker's one binary: it parses the
// command line, builds the parts and runs them. Each subcommand lives in its
// own file; this file only dispatches.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: its one-line summary and its entry point. run
// gets the arguments after the subcommand name and returns the exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"audit":    {"verify, query, export or archive the audit log", runAudit},
		"check":    {"decide one request (or a JSON array of them) offline against a registry", runCheck},
		"dev":      {"run everything embedded (NATS, SQLite, dev key ring, sample partner) for a first transfer", runDev},
		"serve":    {"run the broker against external NATS, Postgres and Vault (--config FILE)", runServe},
		"registry": {"lint or apply a registry directory (policy as code)", runRegistry},
		"report":   {"Art. 30 records of processing (ropa) or a what-if of a proposed registry", runReport},
		"token":    {"mint a compliance API/console token from the dev issuer (--role viewer|officer|admin)", runToken},
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
