package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
)

// runRegistry implements `clearance registry <subcommand>`: lint, and apply
// (registry_apply.go).
func runRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: clearance registry lint DIR | apply --config FILE DIR")
		fmt.Fprintln(stderr, "\n  lint DIR   check a registry directory; prints every problem, exit 1 if there is one, and the dates that need attention")
		fmt.Fprintln(stderr, "  apply      store DIR as a new registry version and put it in force on every instance")
	}
	return subcommands(ctx, "registry", map[string]runFunc{"lint": runRegistryLint, "apply": runRegistryApply}, usage, args, stdout, stderr)
}

func runRegistryLint(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("registry lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	atFlag := fs.String("at", "", "the day the dates are judged on, YYYY-MM-DD or RFC 3339 (default: today, UTC)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance registry lint [--at DAY] DIR")
		fmt.Fprintln(stderr, "\nPrints every problem of the registry (exit 1 if there is one), then the dates that need")
		fmt.Fprintln(stderr, "attention on DAY: agreements expired, ending or assessments due within 30 days, not yet")
		fmt.Fprintln(stderr, "valid or not active, and legal orders past or near their last day. Those do not fail it.")
		fs.PrintDefaults()
	}
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
	at := time.Now()
	if *atFlag != "" {
		t, err := time.Parse(time.DateOnly, *atFlag)
		if err != nil {
			t, err = time.Parse(time.RFC3339, *atFlag)
		}
		if err != nil {
			fmt.Fprintln(stderr, "clearance registry lint: --at: want a day such as 2026-11-28 or an RFC 3339 time")
			return 2
		}
		at = t
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
	printDateNotes(stdout, c, at, "they do not fail the lint")
	printMechanismGaps(stdout, reg, "they do not fail the lint")
	return 0
}

// printMechanismGaps prints the categories reg's disclosure agreements
// let a party receive beyond what its transfer mechanism for that purpose
// lists (Registry.MechanismGaps), if any, under a line that ends with why
// they are no error.
func printMechanismGaps(w io.Writer, reg *agreements.Registry, why string) {
	gaps := reg.MechanismGaps()
	if len(gaps) == 0 {
		return
	}
	fmt.Fprintf(w, "%d case(s) of an agreement permitting categories the transfer mechanism of the same party and purpose does not list (%s):\n", len(gaps), why)
	for _, g := range gaps {
		a, m := g.Agreement, g.Mechanism
		fmt.Fprintf(w, "  %s:%d: agreement %s v%d: categories_beyond_mechanism: lets %s (%s) receive %s for %s, which %s %s v%d (%s:%d) does not list\n",
			a.Src.File, a.Src.Line, a.ID, a.Version, g.Party, g.Country, strings.Join(g.Categories, ", "), g.Purpose,
			m.Kind, m.ID, m.Version, m.Src.File, m.Src.Line)
	}
}

// printDateNotes prints the dates of c that need attention on at's day
// (dateNotes), if any, under a line that ends with why they are no error.
func printDateNotes(w io.Writer, c agreements.Content, at time.Time, why string) {
	notes := dateNotes(c, at)
	if len(notes) == 0 {
		return
	}
	fmt.Fprintf(w, "%d date(s) need attention on %s (%s):\n", len(notes), agreements.Day(at).Format(time.DateOnly), why)
	for _, n := range notes {
		fmt.Fprintln(w, " ", n.text)
	}
}

// dateNote is a registry date that needs attention, at its place in the
// registry's files.
type dateNote struct {
	src  agreements.Source
	text string
}

// dateNotes lists, in file and line order, the agreements with warnings
// (Agreement.Warnings) on at's day and the legal orders past their last
// day or within agreements.WarnWithinDays of it, each as
// "file:line: what: warning: detail".
func dateNotes(c agreements.Content, at time.Time) []dateNote {
	var out []dateNote
	add := func(src agreements.Source, what, warning, detail string) {
		out = append(out, dateNote{src, fmt.Sprintf("%s:%d: %s: %s: %s", src.File, src.Line, what, warning, detail)})
	}
	in := func(date time.Time) string {
		switch n := agreements.DaysFrom(at, date); {
		case n == 0:
			return "today"
		case n == 1:
			return "in 1 day"
		case n > 0:
			return fmt.Sprintf("in %d days", n)
		case n == -1:
			return "1 day ago"
		default:
			return fmt.Sprintf("%d days ago", -n)
		}
	}
	day := func(t time.Time) string { return t.Format(time.DateOnly) }
	for _, a := range c.Agreements {
		what := fmt.Sprintf("agreement %s v%d", a.ID, a.Version)
		for _, w := range a.Warnings(at) {
			var detail string
			switch w {
			case agreements.WarnExpired:
				detail = "its last valid day was " + day(a.ValidUntil) + " (" + in(a.ValidUntil) + ")"
			case agreements.WarnExpiresSoon:
				detail = "its last valid day is " + day(a.ValidUntil) + " (" + in(a.ValidUntil) + ")"
			case agreements.WarnNotYetValid:
				detail = "its first valid day is " + day(a.ValidFrom) + " (" + in(a.ValidFrom) + ")"
			case agreements.WarnInactive:
				detail = "its status is " + string(a.Status)
			case agreements.WarnTIAOverdue:
				detail = "its transfer impact assessment " + a.TIA.Reference + " was due for review on " + day(a.TIA.ReviewBy) + " (" + in(a.TIA.ReviewBy) + "); it carries no transfer until reviewed"
			case agreements.WarnTIAReviewSoon:
				detail = "its transfer impact assessment " + a.TIA.Reference + " is due for review on " + day(a.TIA.ReviewBy) + " (" + in(a.TIA.ReviewBy) + ")"
			}
			add(a.Src, what, w, detail)
		}
	}
	for _, o := range c.LegalOrders {
		switch n := agreements.DaysFrom(at, o.ValidUntil); {
		case n < 0:
			add(o.Src, "legal order "+o.ID, agreements.WarnExpired, "its last valid day was "+day(o.ValidUntil)+" ("+in(o.ValidUntil)+")")
		case n < agreements.WarnWithinDays:
			add(o.Src, "legal order "+o.ID, agreements.WarnExpiresSoon, "its last valid day is "+day(o.ValidUntil)+" ("+in(o.ValidUntil)+")")
		}
	}
	slices.SortStableFunc(out, func(a, b dateNote) int {
		return cmp.Or(cmp.Compare(a.src.File, b.src.File), cmp.Compare(a.src.Line, b.src.Line))
	})
	return out
}
