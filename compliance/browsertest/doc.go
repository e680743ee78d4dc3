// Package browsertest drives the compliance console in Debian's chromium
// over the DevTools protocol (github.com/chromedp/chromedp): signing in,
// filtering the audit log to one subject, opening a refused transfer's
// explanation, downloading a CSV export and running a what-if. Screenshots
// go to $CLEARANCE_ARTIFACTS (or a temporary directory). The test fails with
// a clear message when chromium is missing; scripts/ensure-chromium.sh
// installs it.
package browsertest
