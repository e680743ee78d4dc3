package compliance_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/policy"
	"github.com/clearance-broker/clearance/shred"
	"gopkg.in/yaml.v3"
)

// apiErr is the API's error body.
type apiErr struct{ Error, Message, Parameter string }

// TestFilterValidation checks that every audit filter refuses a bad value
// with a 400 naming the parameter and saying what is wanted, without
// repeating the value: an empty subject would otherwise search everyone,
// an unknown event find nothing.
func TestFilterValidation(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	tests := []struct {
		name      string
		query     string
		wantParam string
		wantSays  string // part of the message
	}{
		{"unknown event", "event=bogus", "event", "decided, delivered"},
		{"event case", "event=Decided", "event", "erasure_justified"},
		{"empty subject", "subject=", "subject", "empty"},
		{"empty subject among others", "decision=deny&subject=&limit=5", "subject", "empty"},
		{"empty request id", "request_id=", "request_id", "empty"},
		{"empty recipient", "recipient=", "recipient", "empty"},
		{"empty event", "event=", "event", "empty"},
		{"empty limit", "limit=", "limit", "empty"},
		{"subject with a control character", "subject=cust-4711%00", "subject", "printable"},
		{"subject too long", "subject=" + strings.Repeat("s", 257), "subject", "256"},
		{"decision", "decision=maybe", "decision", "allow or deny"},
		{"decision case", "decision=ALLOW", "decision", "allow or deny"},
		{"country lower case", "country=de", "country", "alpha-2"},
		{"country name", "country=Germany", "country", "alpha-2"},
		{"inverted range", "from=2026-11-20&to=2026-11-10", "to", "after from"},
		{"empty range", "from=2026-11-20T00:00:00Z&to=2026-11-20", "to", "after from"},
		{"time", "to=tomorrow", "to", "RFC 3339"},
		{"limit 0", "limit=0", "limit", "1 to 1000"},
		{"limit negative", "limit=-5", "limit", "1 to 1000"},
		{"limit too big", "limit=1001", "limit", "1 to 1000"},
		{"after negative", "after=-1", "after", "0 or more"},
		{"after not a number", "after=next", "after", "sequence number"},
		{"request id too long", "request_id=" + strings.Repeat("r", 257), "request_id", "256 bytes"},
		{"request id with a line break", "request_id=ord-1%0Acust-4711", "request_id", "control characters"},
		{"request id not UTF-8", "request_id=ord-%FF", "request_id", "UTF-8"},
		{"recipient with a control character", "recipient=swift%07", "recipient", "control characters"},
		{"purpose too long", "purpose=" + strings.Repeat("p", 257), "purpose", "256 bytes"},
		{"hmac", "subject_hmac=ABC", "subject_hmac", "hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/v1/audit/entries?", "/v1/audit/export?format=jsonl&"} {
				code, b := c.get(path + tt.query)
				var e apiErr
				if err := json.Unmarshal(b, &e); err != nil {
					t.Fatalf("%s: %d %s", path, code, b)
				}
				if code != http.StatusBadRequest || e.Error != "bad_request" || e.Parameter != tt.wantParam ||
					!strings.Contains(e.Message, tt.wantParam) || !strings.Contains(e.Message, tt.wantSays) {
					t.Fatalf("%s%s: %d %+v, want 400 naming %s and saying %q", path, tt.query, code, e, tt.wantParam, tt.wantSays)
				}
				if strings.Contains(e.Message, "4711") {
					t.Fatalf("the message repeats the value: %q", e.Message)
				}
			}
		})
	}
}

// TestUnknownParameterNameNotEchoed: a parameter name is outside input
// too. One that is a plain word (a typo of a known name) is named; any other
// (a subject id, or "subject=..." sent as one name) is answered as an
// unknown parameter without its name, in the message and in parameter.
func TestUnknownParameterNameNotEchoed(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	tests := []struct {
		name      string
		path      string
		wantParam string
	}{
		{"typo named", "/v1/audit/entries?recipeint=x", "recipeint"},
		{"pair as one name", "/v1/audit/entries?subject%3Dalice%40example.com", ""},
		{"email as a name", "/v1/audit/entries?alice%40example.com=1", ""},
		{"customer number as a name", "/v1/audit/export?cust-4711=1", ""},
		{"pair as one name, overview", "/v1/reports/overview?subject%3Dalice%40example.com", ""},
		{"pair as one name, recipients", "/v1/subjects/cust-1/recipients?subject%3Dalice%40example.com", ""},
		{"typo named, overview", "/v1/reports/overview?form=2026-11-01", "form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := c.get(tt.path)
			var e apiErr
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%d %s", code, b)
			}
			if code != http.StatusBadRequest || e.Parameter != tt.wantParam || !strings.Contains(e.Message, "unknown parameter") ||
				!strings.Contains(e.Message, tt.wantParam) {
				t.Fatalf("%d %+v, want 400 naming %q", code, e, tt.wantParam)
			}
			for _, leak := range []string{"alice", "example.com", "4711"} {
				if strings.Contains(string(b), leak) {
					t.Fatalf("the answer repeats %q: %s", leak, b)
				}
			}
		})
	}
}

// TestEventFilterKnowsEveryEvent checks that the event filter accepts every
// event some part of Clearance writes to the audit log, and finds them.
func TestEventFilterKnowsEveryEvent(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	events := []audit.Event{audit.EventDecided, audit.EventDelivered, audit.EventDeliveryFailed, audit.EventRejected,
		audit.EventReceived, audit.EventErasureNotified, audit.EventRegistryApplied, audit.EventConsentRecorded,
		audit.EventErasureRecorded, compliance.EventAPICall, policy.EventLegalOrderRecorded, policy.EventAgreementSuspended,
		erasure.EventErasureEscalated, erasure.EventErasureJustified, shred.EventKeyDestroyed}
	var doc struct {
		Components struct {
			Parameters struct {
				Event struct {
					Schema struct {
						Enum []string `yaml:"enum"`
					} `yaml:"schema"`
				} `yaml:"event"`
			} `yaml:"parameters"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(compliance.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := doc.Components.Parameters.Event.Schema.Enum
	for _, ev := range events {
		if !slices.Contains(documented, string(ev)) {
			t.Errorf("openapi.yaml's event parameter does not list %s", ev)
		}
	}
	if len(documented) != len(events) {
		t.Errorf("openapi.yaml lists %d events, want the %d accepted: %q", len(documented), len(events), documented)
	}
	for _, ev := range events {
		if _, err := f.Log.Append(context.Background(), &audit.Entry{Time: compliancetest.Now.Add(-time.Hour), Event: ev,
			RequestID: "event-" + string(ev), Source: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range events {
		t.Run(string(ev), func(t *testing.T) {
			code, b := c.get("/v1/audit/entries?event=" + string(ev))
			var page compliance.Page
			if code != http.StatusOK || json.Unmarshal(b, &page) != nil {
				t.Fatalf("%d %s", code, b)
			}
			if len(page.Entries) != 1 || page.Entries[0].RequestID != "event-"+string(ev) {
				t.Fatalf("event=%s found %d entries", ev, len(page.Entries))
			}
		})
	}
}

// requestLink is the entry page's link to the entries of its request.
var requestLink = regexp.MustCompile(`href="(/console/audit\?request_id=[^"]*)"`)

// TestRequestIDFilterAcceptsBrokerIDs checks that a request id the broker
// accepts (any 1 to 256 bytes without control characters) can be searched
// for, through the API and the console's "all entries of this request"
// link, on SQLite and on PostgreSQL.
func TestRequestIDFilterAcceptsBrokerIDs(t *testing.T) {
	ids := []struct {
		name string
		give string
	}{
		{"space", "order 10023 delivery"},
		{"slash and hash", "crm/contacts#881"},
		{"plus, comma, equals", "a+b,c=d;e"},
		{"quotes", `say "hi" it's`},
		{"percent and ampersand", "50%&more?x=1"},
		{"non-ASCII", "Bestellung-Größe-注文"},
		{"256 bytes", strings.Repeat("x", 256)},
		{"tokens as before", "ord-10023.delivery:2_x"},
		// Refused by the broker from now on, but accepted before: entries
		// under such ids may be in the log.
		{"white space at the ends", " ord-10023 "},
	}
	stores := []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return compliancetest.PostgresDSN(t) }},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			f := compliancetest.NewOn(t, st.dsn(t))
			c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
			for _, id := range ids {
				if _, err := f.Log.Append(context.Background(), &audit.Entry{Time: compliancetest.Now.Add(-time.Hour),
					Event: audit.EventDecided, RequestID: id.give, Source: "test", Decision: "deny", Reasons: []string{"no_agreement"}}); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range ids {
				t.Run(id.name, func(t *testing.T) {
					q := url.Values{"request_id": {id.give}}.Encode()
					code, b := c.get("/v1/audit/entries?" + q)
					var page compliance.Page
					if code != http.StatusOK || json.Unmarshal(b, &page) != nil {
						t.Fatalf("API: %d %s", code, b)
					}
					if len(page.Entries) != 1 || page.Entries[0].RequestID != id.give {
						t.Fatalf("API found %d entries", len(page.Entries))
					}
					// The entry page's link to every entry of its request.
					seq := strconv.FormatInt(page.Entries[0].Sequence, 10)
					code, b = c.get("/console/audit/" + seq)
					m := requestLink.FindSubmatch(b)
					if code != http.StatusOK || m == nil {
						t.Fatalf("entry page: %d, no link to the request's entries:\n%s", code, b)
					}
					code, b = c.get(html.UnescapeString(string(m[1])))
					row := `<a href="/console/audit/` + seq + `"`
					if code != http.StatusOK || strings.Count(string(b), `<a href="/console/audit/`) != 1 || !strings.Contains(string(b), row) {
						t.Fatalf("console: %d, want the one row of the request:\n%s", code, b)
					}
				})
			}
		})
	}
}

// TestNameFiltersAcceptLoggedNames checks that the recipient and purpose
// filters find every name the broker writes to the log, not only registry
// ids: an unknown one is logged as agreements.WithheldName, or as sent
// when it is a plain identifier.
func TestNameFiltersAcceptLoggedNames(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	if _, err := f.Log.Append(context.Background(), &audit.Entry{Time: compliancetest.Now.Add(-time.Hour), Event: audit.EventDecided,
		RequestID: "ord-withheld", Source: "test", Recipient: agreements.WithheldName, Purpose: agreements.WithheldName,
		Decision: "deny", Reasons: []string{agreements.ReasonUnknownRecipient, agreements.ReasonUnknownPurpose}}); err != nil {
		t.Fatal(err)
	}
	for _, param := range []string{"recipient", "purpose"} {
		t.Run(param, func(t *testing.T) {
			code, b := c.get("/v1/audit/entries?" + url.Values{param: {agreements.WithheldName}}.Encode())
			var page compliance.Page
			if code != http.StatusOK || json.Unmarshal(b, &page) != nil || len(page.Entries) != 1 || page.Entries[0].RequestID != "ord-withheld" {
				t.Fatalf("%s=%s: %d %s", param, agreements.WithheldName, code, b)
			}
		})
	}
}
