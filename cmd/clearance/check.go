package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/clearance-broker/clearance/agreements"
)

// maxRequestInput bounds what check reads from a file or stdin.
const maxRequestInput = 64 << 20

// runCheck implements `clearance check`: one decision (or one per element of
// a JSON array), offline, with the broker's engine. It exits 0 whatever the
// decisions are and 2 on bad flags, a bad registry or a malformed request.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	regDir := fs.String("registry", "", "registry `DIR`ectory of YAML files (required)")
	reqPath := fs.String("request", "", "request `FILE` (JSON object or array); - reads stdin (required)")
	atFlag := fs.String("at", "", "decision time, RFC 3339 (default: now)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance check --registry DIR --request FILE|- [--at RFC3339]")
		fmt.Fprintln(stderr, "\nPrints the decision JSON for the request (an array for an array), exit 0 whatever the decision.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "clearance check: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *regDir == "" || *reqPath == "" {
		fmt.Fprintln(stderr, "clearance check: --registry and --request are required")
		fs.Usage()
		return 2
	}
	at := time.Now().UTC().Truncate(time.Second)
	if *atFlag != "" {
		t, err := time.Parse(time.RFC3339, *atFlag)
		if err != nil {
			fmt.Fprintln(stderr, "clearance check: --at: want an RFC 3339 time such as 2026-11-28T00:00:00Z")
			return 2
		}
		at = t.UTC()
	}
	reg, err := agreements.Load(*regDir)
	if err != nil {
		fmt.Fprintln(stderr, "clearance check: registry is invalid (run 'clearance registry lint' for details):")
		for _, p := range agreements.Problems(err) {
			fmt.Fprintln(stderr, "  "+p.Error())
		}
		return 2
	}
	data, err := readInput(*reqPath)
	if err != nil {
		fmt.Fprintf(stderr, "clearance check: read request: %v\n", err)
		return 2
	}
	reqs, err := agreements.ParseRequests(data)
	if err != nil {
		for _, p := range agreements.Problems(err) {
			fmt.Fprintln(stderr, "clearance check: "+p.Error())
		}
		return 2
	}
	if ctx.Err() != nil {
		return 2
	}
	engine := agreements.NewEngine(reg)
	decisions := make([]*agreements.Decision, len(reqs))
	for i, req := range reqs {
		decisions[i] = engine.Decide(req, at)
	}
	var out any = decisions
	if !isArray(data) {
		out = decisions[0]
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(stderr, "clearance check: write decision: %v\n", err)
		return 1
	}
	return 0
}

func readInput(path string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxRequestInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRequestInput {
		return nil, fmt.Errorf("input larger than %d MiB", maxRequestInput>>20)
	}
	return data, nil
}

func isArray(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '['
}
