package browsertest

import (
	"context"
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// chromiumPath finds the browser, or fails the test saying how to get it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CLEARANCE_CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: run scripts/ensure-chromium.sh (Debian: apt-get install chromium), " +
		"or point CLEARANCE_CHROMIUM at a Chromium binary")
	return ""
}

// artifacts is where screenshots and downloads go.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CLEARANCE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func browse(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancel3)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

func run(t *testing.T, ctx context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

// value runs one action that returns a value.
func value[T any](t *testing.T, ctx context.Context, step string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	return v
}

// TestConsoleWalkthrough is the "done when": a newcomer signs in
// with a token, finds the transfers of one subject, sees why one was
// refused, exports them, and runs a what-if.
func TestConsoleWalkthrough(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 2)
	out := artifacts(t)
	ctx := browse(t)
	base := f.HTTP.URL

	// Sign in: the console sends us to the sign-in page first.
	run(t, ctx, "open console",
		chromedp.Navigate(base+"/console/audit"),
		chromedp.WaitVisible(chromedp.ID("token")))
	signinURL := value(t, ctx, "location", chromedp.Location())
	if !strings.Contains(signinURL, "/console/signin") {
		t.Fatalf("not sent to sign-in: %s", signinURL)
	}
	screenshot(t, ctx, out, "01-signin")
	run(t, ctx, "sign in",
		chromedp.SetValue(chromedp.ID("token"), f.Token(t, compliance.RoleOfficer)),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("filter-submit")))

	run(t, ctx, "overview",
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("figure.chart svg")))
	// Keyboard: the first Tab reaches the skip link, the next the menu.
	run(t, ctx, "keyboard", chromedp.KeyEvent(kb.Tab))
	focused := value(t, ctx, "focus", chromedp.Evaluate[string](`document.activeElement.className`))
	if focused != "skip" {
		t.Errorf("first Tab focuses %q, want the skip link", focused)
	}
	screenshot(t, ctx, out, "02-overview")

	// Filter the audit log to one subject (cust-886: refused to Brazil).
	run(t, ctx, "filter to one subject",
		chromedp.Navigate(base+"/console/audit"),
		chromedp.WaitVisible(chromedp.ID("f-subject")),
		chromedp.SendKeys(chromedp.ID("f-subject"), "cust-886"),
		chromedp.Click(chromedp.ID("filter-submit")),
		// The filter is posted and answered with a redirect to an address
		// holding the subject's HMAC (in the form, hidden), not the id.
		chromedp.WaitReady(chromedp.CSS(`input[name="subject_hmac"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.entries")))
	filtered := value(t, ctx, "filtered location", chromedp.Location())
	if strings.Contains(filtered, "cust-886") || !strings.Contains(filtered, "subject_hmac=") {
		t.Fatalf("the subject typed lands in the address: %s", filtered)
	}
	rows := value(t, ctx, "read rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll("table.entries tbody tr")].map(r => r.innerText)`))
	if len(rows) == 0 {
		t.Fatal("no rows for the subject")
	}
	for _, r := range rows {
		if !strings.Contains(r, "rapido-br") {
			t.Fatalf("a row of another transfer: %q", r)
		}
	}
	screenshot(t, ctx, out, "03-audit-subject")

	// Open the refused transfer's explanation.
	run(t, ctx, "explain a refusal",
		chromedp.Click(chromedp.CSS(`table.entries tbody tr td a`)),
		chromedp.WaitVisible(chromedp.ID("explanation")))
	explanation := value(t, ctx, "explanation", chromedp.Text(chromedp.ID("explanation")))
	for _, want := range []string{"failed", "no_transfer_mechanism", "Transfer mechanism (Chapter V)", "from DE to BR"} {
		if !strings.Contains(explanation, want) {
			t.Errorf("explanation lacks %q:\n%s", want, explanation)
		}
	}
	screenshot(t, ctx, out, "04-explanation")

	// Download the CSV export of the subject's entries.
	dl := filepath.Join(out, "downloads")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		t.Fatal(err)
	}
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	yes := true
	run(t, ctx, "download csv",
		chromedp.Navigate(filtered),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dl, EventsEnabled: &yes,
			})
			return err
		}),
		chromedp.WaitVisible(chromedp.ID("export-csv")),
		chromedp.Click(chromedp.ID("export-csv")))
	done := make(chan string, 1)
	go func() {
		for ev, err := range progress {
			if err != nil {
				return
			}
			if ev.State == browser.DownloadProgressStateCompleted {
				done <- ev.GUID
				return
			}
		}
	}()
	var guid string
	select {
	case guid = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the CSV download did not complete")
	}
	data, err := os.ReadFile(filepath.Join(dl, guid))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(string(data))).ReadAll()
	if err != nil || len(recs) < 2 || recs[0][0] != "sequence" {
		t.Fatalf("csv: %v %q", err, data)
	}
	hmac := audit.SubjectHMAC(compliancetest.SubjectKey, "cust-886")
	for _, r := range recs[1:] {
		if r[21] != hmac {
			t.Fatalf("exported an entry of another subject: %v", r)
		}
	}
	_ = os.WriteFile(filepath.Join(out, "export-cust-886.csv"), data, 0o644)

	// Run a what-if: the first agreement of the example ends in 2025.
	propDir := t.TempDir()
	var files []string
	names, _ := filepath.Glob(filepath.Join(f.Registry, "*.yaml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if filepath.Base(n) == "40-agreements.yaml" {
			s = strings.Replace(s, "valid_until: 2027-12-31", "valid_until: 2025-01-31", 1)
			// and the US carrier's agreement no longer covers phone numbers
			s = strings.Replace(s, "categories: [order.reference, identity.name, contact.address, contact.phone]\n    valid_from: 2025-03-01",
				"categories: [order.reference, identity.name, contact.address]\n    valid_from: 2025-03-01", 1)
		}
		p := filepath.Join(propDir, filepath.Base(n))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	run(t, ctx, "what-if",
		chromedp.Navigate(base+"/console/whatif"),
		chromedp.WaitVisible(chromedp.ID("w-registry")),
		chromedp.SetUploadFiles(chromedp.ID("w-registry"), files),
		chromedp.SendKeys(chromedp.ID("w-from"), "2026-10-01"),
		chromedp.Click(chromedp.ID("whatif-submit")),
		chromedp.WaitVisible(chromedp.ID("whatif-result")))
	summary := value(t, ctx, "what-if result", chromedp.Text(chromedp.ID("whatif-result")))
	if !strings.Contains(summary, "would now be refused") || !strings.Contains(summary, "now refused: the agreement with the recipient had expired") ||
		!strings.Contains(summary, "stay allowed but would send other data") || !strings.Contains(summary, "no longer sends contact.phone; removes phone") {
		t.Fatalf("what-if result:\n%s", summary)
	}
	screenshot(t, ctx, out, "05-whatif")

	run(t, ctx, "records of processing",
		chromedp.Navigate(base+"/console/ropa"),
		chromedp.WaitVisible(chromedp.CSS("section.ropa")))
	screenshot(t, ctx, out, "06-ropa")
}
