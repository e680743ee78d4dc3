package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/clearance-broker/clearance/agreements"
)

// runRegistry implements `clearance registry <subcommand>`: lint, and apply
// (registry_apply.go).
func runRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: clearance registry lint DIR | apply --config FILE DIR")
		fmt.Fprintln(stderr, "\n  lint DIR   check a registry directory; prints every problem, exit 1 if there is one")
		fmt.Fprintln(stderr, "  apply      store DIR as a new registry version and put it in force on every instance")
	}
	return subcommands(ctx, "registry", map[string]runFunc{"lint": runRegistryLint, "apply": runRegistryApply}, usage, args, stdout, stderr)
}

func runRegistryLint(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("registry lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: clearance registry lint DIR") }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	reg, err := agreements.Load(fs.Arg(0))
	if err != nil {
		problems := agreements.Problems(err)
		for _, p := range problems {
			fmt.Fprintln(stdout, p.Error())
		}
		fmt.Fprintf(stderr, "clearance registry lint: %d problem(s)\n", len(problems))
		return 1
	}
	c := reg.Content()
	fmt.Fprintf(stdout, "ok: %d zones, %d adequacy decisions, %d parties, %d datasets, %d purposes, %d agreements, %d consents, %d legal orders, %d erasures\nversion: %s\n",
		len(c.Zones), len(c.Adequacy), len(c.Parties), len(c.Datasets), len(c.Purposes), len(c.Agreements),
		len(c.Consents), len(c.LegalOrders), len(c.Erasures), reg.Version())
	return 0
}
