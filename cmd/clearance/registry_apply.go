package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// runRegistryApply implements `clearance registry apply --config FILE DIR`:
// it loads DIR, stores it as a new registry version (every agreement under
// its id and version), audits it and publishes it to every running
// instance. Exit 0 applied or unchanged, 1 on a problem, 2 on bad usage.
func runRegistryApply(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("registry apply", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "broker configuration `FILE` (its store, nats, vault and audit sections are used)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance registry apply --config FILE DIR")
		fmt.Fprintln(stderr, "\nStores DIR as a new registry version and puts it in force on every instance.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *cfgPath == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	reg, err := agreements.Load(fs.Arg(0))
	if err != nil {
		problems := agreements.Problems(err)
		for _, p := range problems {
			fmt.Fprintln(stdout, p.Error())
		}
		fmt.Fprintf(stderr, "clearance registry apply: %d problem(s); nothing applied\n", len(problems))
		return 1
	}
	cfg, code := loadConfig("clearance registry apply", *cfgPath, stderr)
	if cfg == nil {
		return code
	}
	logger := cfg.Logging.NewLogger(stderr)
	ev, applied, err := registryApply(ctx, cfg, reg, logger)
	if err != nil {
		fmt.Fprintln(stderr, "clearance registry apply:", err)
		return 1
	}
	if !applied {
		fmt.Fprintf(stdout, "unchanged: version %s is in force (event %d)\n", reg.Version(), ev.Seq)
	} else {
		fmt.Fprintf(stdout, "applied: event %d, registry version %s (content %s)\n", ev.Seq, ev.Version, ev.Base)
	}
	printDateNotes(stdout, reg.Content(), time.Now(), "the registry in force as applied, run-time changes aside")
	printMechanismGaps(stdout, reg, "decisions follow the registry as written")
	if applied {
		return reportSync(ev.Sync, stdout, stderr)
	}
	return 0
}

// reportSync says which running instances confirmed that the applied
// registry is in force, and returns 1 when an announced one did not: the
// registry is stored and every instance catches up through the watch or
// the store, but until then it decides with the registry before (a
// running instance that cannot catch up shows it in /readyz).
func reportSync(s policy.Sync, stdout, stderr io.Writer) int {
	if len(s.Unconfirmed) == 0 {
		fmt.Fprintf(stdout, "in force on %d instance(s), this command's included\n", s.Confirmed)
		return 0
	}
	fmt.Fprintf(stderr, "clearance registry apply: applied, but %d running instance(s) did not confirm it within %s: %s; "+
		"they catch up through the registry watch or the store (check their /readyz and logs); applying again changes nothing\n",
		len(s.Unconfirmed), s.Took.Round(time.Millisecond), strings.Join(s.Unconfirmed, ", "))
	return 1
}

// registryApply connects to the store, the audit log and NATS as the
// configuration says and applies reg.
func registryApply(ctx context.Context, cfg *config.Config, reg *agreements.Registry, logger *slog.Logger) (policy.Event, bool, error) {
	var st stack
	defer st.close(logger)
	var signer audit.Signer
	if cfg.Vault != nil {
		vault, err := keys.NewVault(ctx, *cfg.Vault, logger)
		if err != nil {
			return policy.Event{}, false, err
		}
		st.add(vault.Close)
		signer = vault
	} else {
		ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: cfg.DevKeyring.Path, Allow: true})
		if err != nil {
			return policy.Event{}, false, err
		}
		signer = ring
	}
	subjectKey, err := cfg.Audit.SubjectKey()
	if err != nil {
		return policy.Event{}, false, err
	}
	db, err := openStore(ctx, &st, cfg.Store, "store")
	if err != nil {
		return policy.Event{}, false, err
	}
	nopts, err := natsOptions(cfg.NATS, logger)
	if err != nil {
		return policy.Event{}, false, err
	}
	nc, err := connectNATS(&st, joinURLs(cfg.NATS.URLs), nopts...)
	if err != nil {
		return policy.Event{}, false, err
	}
	// The checkpoint the log signs as it closes is mirrored as serve's are.
	pub, err := mirrorCheckpoints(ctx, &st, nc, cfg.Audit.CheckpointStream, cfg.NATS.Replicas, prometheus.NewRegistry(), logger)
	if err != nil {
		return policy.Event{}, false, err
	}
	auditLog, err := audit.Open(ctx, db, audit.Options{SubjectKey: subjectKey, Signer: signer, Logger: logger, OnCheckpoint: pub.OnCheckpoint()})
	if err != nil {
		return policy.Event{}, false, err
	}
	st.add(auditLog.Close)
	store, err := policy.OpenStore(ctx, db)
	if err != nil {
		return policy.Event{}, false, err
	}
	live, err := policy.Start(ctx, policy.Options{
		Store: store, Engine: agreements.NewEngine(reg), NATS: nc, Audit: auditLog,
		Logger: logger, Resync: time.Hour,
	})
	if err != nil {
		return policy.Event{}, false, err
	}
	defer live.Stop()
	return live.Apply(ctx, reg)
}
