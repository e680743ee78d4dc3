package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
)

// runKeys implements `clearance keys`: the upkeep of the keys Vault wraps.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: clearance keys rewrap --config FILE [--batch N] [--json]")
		fmt.Fprintln(stderr, "\nrewrap  bring every live subject key up to the latest version of the Vault encryption key,")
		fmt.Fprintln(stderr, "        before that key's older versions are retired (min_decryption_version)")
	}
	return subcommands(ctx, "keys", map[string]runFunc{"rewrap": runKeysRewrap}, usage, args, stdout, stderr)
}

// runKeysRewrap implements `clearance keys rewrap`.
func runKeysRewrap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys rewrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "broker configuration `FILE` (its vault, store and subject_keys sections are used)")
	batch := fs.Int("batch", 500, "subject keys per transit/rewrap request")
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance keys rewrap --config FILE [--batch N] [--json]")
		fmt.Fprintln(stderr, "\nRe-encrypts the wrapped key of every live subject in the subject key store with the latest")
		fmt.Fprintln(stderr, "version of vault.encryption_key (transit/rewrap: the keys never leave Vault in clear), so")
		fmt.Fprintln(stderr, "that raising min_decryption_version does not make them, and everything sealed for their")
		fmt.Fprintln(stderr, "subjects, unreadable. Safe while the broker runs, and to run again. Destroyed keys stay destroyed.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, "clearance keys rewrap", stderr); !ok {
		return code
	}
	if *cfgPath == "" || *batch <= 0 {
		fmt.Fprintln(stderr, "clearance keys rewrap: --config and a positive --batch are required")
		return 2
	}
	cfg, code := loadConfig("clearance keys rewrap", *cfgPath, stderr)
	if cfg == nil {
		return code
	}
	if cfg.Vault == nil {
		fmt.Fprintln(stderr, "clearance keys rewrap: the vault section is required: the subject keys are wrapped with its encryption key")
		return 2
	}
	logger := cfg.Logging.NewLogger(stderr)
	st := &stack{}
	defer st.close(logger)
	vault, err := keys.NewVault(ctx, *cfg.Vault, logger)
	if err != nil {
		fmt.Fprintln(stderr, "clearance keys rewrap:", err)
		return 1
	}
	st.add(vault.Close)
	store, path := subjectKeyStoreConfig(cfg)
	db, err := openStore(ctx, st, store, path)
	if err != nil {
		fmt.Fprintln(stderr, "clearance keys rewrap:", err)
		return 1
	}
	progress := func(s shred.RewrapStats) {
		fmt.Fprintf(stderr, "clearance keys rewrap: %d subject keys read, %d rewrapped\n", s.Live, s.Rewrapped)
	}
	stats, err := shred.RewrapKeys(ctx, db, vault, *batch, progress)
	if err != nil && len(stats.Failed) == 0 {
		// Stopped on the way: what was rewrapped stays so, and a run
		// again finds it current.
		fmt.Fprintf(stderr, "clearance keys rewrap: %v (%d of the %d keys read so far rewrapped)\n", err, stats.Rewrapped, stats.Live)
		return 1
	}
	if *asJSON {
		b, _ := json.Marshal(stats)
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "live subject keys:   %d (in %s)\nrewrapped:           %d\nalready current:     %d\n", stats.Live, path, stats.Rewrapped, stats.Current)
		if stats.Skipped > 0 {
			fmt.Fprintf(stdout, "destroyed meanwhile: %d (left destroyed)\n", stats.Skipped)
		}
		if len(stats.Failed) > 0 {
			fmt.Fprintf(stdout, "refused by Vault:    %d, left as they were: %s\n", len(stats.Failed), strings.Join(stats.Failed, " "))
		}
	}
	if err != nil {
		// Keys Vault refuses for their own sake (altered, or under a
		// version already retired) do not open now either: retiring
		// the version loses nothing more, but they are named so that
		// their subjects can be looked into.
		fmt.Fprintf(stderr, "clearance keys rewrap: %v\n", err)
		return 1
	}
	return 0
}

// subjectKeyStoreConfig is the store that holds the subject keys, and the
// path of its configuration: subject_keys.store, or else store.
func subjectKeyStoreConfig(cfg *config.Config) (config.Store, string) {
	if cfg.SubjectKeys.Store != nil {
		return *cfg.SubjectKeys.Store, "subject_keys.store"
	}
	return cfg.Store, "store"
}
