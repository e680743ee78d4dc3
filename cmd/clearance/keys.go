package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go/jetstream"
)

// runKeys implements `clearance keys`: the upkeep of the keys Vault wraps.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: clearance keys rewrap --config FILE [--batch N] [--dead-letters=false] [--json]")
		fmt.Fprintln(stderr, "\nrewrap  bring every live subject key and every dead letter sealed under the broker's own key")
		fmt.Fprintln(stderr, "        up to the latest version of the Vault encryption key, before that key's older")
		fmt.Fprintln(stderr, "        versions are retired (min_decryption_version)")
	}
	return subcommands(ctx, "keys", map[string]runFunc{"rewrap": runKeysRewrap}, usage, args, stdout, stderr)
}

// runKeysRewrap implements `clearance keys rewrap`.
func runKeysRewrap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys rewrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "broker configuration `FILE` (its vault, store, subject_keys and nats sections are used)")
	batch := fs.Int("batch", 500, "subject keys or dead letters per transit/rewrap request")
	withDeadLetters := fs.Bool("dead-letters", true, "also rewrap the dead letters sealed under the broker's own key (the nats section is used)")
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance keys rewrap --config FILE [--batch N] [--dead-letters=false] [--json]")
		fmt.Fprintln(stderr, "\nRe-encrypts the wrapped key of every live subject in the subject key store with the latest")
		fmt.Fprintln(stderr, "version of vault.encryption_key (transit/rewrap: the keys never leave Vault in clear), so")
		fmt.Fprintln(stderr, "that raising min_decryption_version does not make them, and everything sealed for their")
		fmt.Fprintln(stderr, "subjects, unreadable. Then re-seals, under the same data key brought up to the latest")
		fmt.Fprintln(stderr, "version, each dead letter sealed under the broker's own key (their sequence changes; the")
		fmt.Fprintln(stderr, "content is never printed). Safe while the broker runs, and to run again. Destroyed keys")
		fmt.Fprintln(stderr, "stay destroyed.")
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
	if err != nil && !keys.KeyFault(err) {
		// Stopped on the way: what was rewrapped stays so, and a run
		// again finds it current.
		fmt.Fprintf(stderr, "clearance keys rewrap: %v (%d of the %d keys read so far rewrapped)\n", err, stats.Rewrapped, stats.Live)
		return 1
	}
	faults := err
	var dl *broker.DeadLetterRewrapStats
	if *withDeadLetters {
		dl = &broker.DeadLetterRewrapStats{}
		js, _, err := deadLetters(ctx, st, cfg, logger)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			err = nil // no dead letter kept yet
		case err == nil:
			*dl, err = broker.RewrapDeadLetters(ctx, js, vault, *batch, func(s broker.DeadLetterRewrapStats) {
				fmt.Fprintf(stderr, "clearance keys rewrap: %d dead letters read, %d rewrapped\n", s.Read, s.Rewrapped)
			})
		}
		if err != nil && !keys.KeyFault(err) {
			fmt.Fprintf(stderr, "clearance keys rewrap: the subject keys are done; dead letters: %v (%d rewrapped so far; run it again, or with --dead-letters=false where NATS cannot be reached)\n", err, dl.Rewrapped)
			return 1
		}
		faults = errors.Join(faults, err)
	}
	if *asJSON {
		b, _ := json.Marshal(struct {
			SubjectKeys shred.RewrapStats             `json:"subject_keys"`
			DeadLetters *broker.DeadLetterRewrapStats `json:"dead_letters,omitempty"`
		}{stats, dl})
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "live subject keys:   %d (in %s)\nrewrapped:           %d\nalready current:     %d\n", stats.Live, path, stats.Rewrapped, stats.Current)
		if stats.Skipped > 0 {
			fmt.Fprintf(stdout, "destroyed meanwhile: %d (left destroyed)\n", stats.Skipped)
		}
		if len(stats.Failed) > 0 {
			fmt.Fprintf(stdout, "refused by Vault:    %d, left as they were: %s\n", len(stats.Failed), strings.Join(stats.Failed, " "))
		}
		if dl != nil {
			fmt.Fprintf(stdout, "dead letters:        %d (%d under subject keys, %d empty)\nrewrapped:           %d (published again, their old copy deleted)\nalready current:     %d\n",
				dl.Read, dl.SubjectKeyed, dl.Empty, dl.Rewrapped, dl.Current)
			if dl.Gone > 0 {
				fmt.Fprintf(stdout, "deleted meanwhile:   %d (their new copy deleted too)\n", dl.Gone)
			}
			if len(dl.Failed) > 0 {
				seqs := make([]string, len(dl.Failed))
				for i, q := range dl.Failed {
					seqs[i] = strconv.FormatUint(q, 10)
				}
				fmt.Fprintf(stdout, "refused by Vault:    %d, left as they were: %s\n", len(dl.Failed), strings.Join(seqs, " "))
			}
		}
	}
	if faults != nil {
		// What Vault refuses for its own sake (altered, or under a
		// version already retired) does not open now either: retiring
		// the version loses nothing more, but it is named so that it
		// can be looked into.
		fmt.Fprintf(stderr, "clearance keys rewrap: %v\n", faults)
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
