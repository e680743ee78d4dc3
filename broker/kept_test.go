package broker

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
)

// TestOpenInbound opens regional envelopes: under the shared key, under a
// subject key, and refuses (permanently) a subject envelope this region has
// no key ring for or whose subject was erased.
func TestOpenInbound(t *testing.T) {
	ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: filepath.Join(t.TempDir(), "ring.json"), Allow: true})
	if err != nil {
		t.Fatal(err)
	}
	db, err := audit.OpenDB(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	subjectKey := []byte("kept-test-subject-key-0123456789")
	log, err := audit.Open(t.Context(), db, audit.Options{SubjectKey: subjectKey, Signer: ring})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(t.Context()) })
	k, err := shred.Open(t.Context(), shred.Options{DB: db, Keys: ring, Audit: log, SubjectKey: subjectKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	shared, err := ring.Seal(t.Context(), []byte("shared"))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := k.Seal(t.Context(), "cust-1", []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	erased, err := k.Seal(t.Context(), "cust-2", []byte("erased"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Destroy(t.Context(), "cust-2", "test"); err != nil {
		t.Fatal(err)
	}
	with := &Broker{opts: Options{Subjects: k}, keys: ring}
	without := &Broker{keys: ring}
	tests := []struct {
		name      string
		b         *Broker
		data      []byte
		want      string
		permanent bool
	}{
		{"shared key", with, shared, "shared", false},
		{"shared key, no subject keys", without, shared, "shared", false},
		{"subject key", with, kept, "kept", false},
		{"subject key, no subject keys here", without, kept, "", true},
		{"erased subject", with, erased, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.b.openInbound(t.Context(), tt.data)
			if tt.permanent {
				if Classify(err) != OutcomePermanent {
					t.Fatalf("openInbound = %q, %v; want a permanent error", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("openInbound = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// A subject envelope whose ciphertext was altered does not open, and
	// is never retried.
	parts := bytes.Split(kept, []byte("."))
	parts[3] = []byte("AAAA")
	altered := bytes.Join(parts, []byte("."))
	if !shred.IsEnvelope(altered) {
		t.Fatal("the altered envelope is no longer taken for a subject envelope")
	}
	if _, err := with.openInbound(t.Context(), altered); !errors.Is(err, shred.ErrMalformed) || Classify(err) != OutcomePermanent {
		t.Errorf("malformed envelope: %v", err)
	}
}

// TestLooseSubject reads the subject id of a request the parser refuses,
// as its dead letter's key: from valid JSON as json.Unmarshal reads it,
// and from text that is not JSON up to its first syntax error, so that a
// request with personal data that is also malformed is still kept under
// its subject's key and goes with an erasure.
func TestLooseSubject(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    string
		several bool
	}{
		{"valid", `{"id":"r1","subject":{"id":"cust-881"},"record":{"name":"Ada Lovelace"}}`, "cust-881", false},
		{"valid, unknown key", `{"id":"r1","subject":{"id":"cust-881","tier":"gold"},"extra":[1,{"id":"x"}]}`, "cust-881", false},
		{"valid, key given twice", `{"subject":{"id":"cust-1"},"subject":{"id":"cust-881"}}`, "cust-881", true},
		{"valid, keys in other case", `{"Subject":{"ID":"cust-881"}}`, "cust-881", false},
		{"valid, no subject", `{"id":"r1","record":{"subject":{"id":"cust-881"}}}`, "", false},
		{"valid, id not a string", `{"subject":{"id":881}}`, "", false},
		{"valid, subject not an object", `{"subject":"cust-881"}`, "", false},
		{"valid, not an object", `["cust-881"]`, "", false},
		{"trailing comma after the record", `{"id":"r1","subject":{"id":"cust-881"},"record":{"name":"Ada Lovelace"},}`, "cust-881", false},
		{"NaN after the subject", `{"id":"r1","subject":{"id":"cust-881"},"amount":NaN,"record":{"name":"Ada Lovelace"}}`, "cust-881", false},
		{"cut short", `{"id":"r1","subject":{"id":"cust-881"},"record":{"name":"Ada Lovelace"}`, "cust-881", false},
		{"cut short in the subject", `{"subject":{"id":"cust-881","tier":"go`, "cust-881", false},
		{"text after the request", `{"subject":{"id":"cust-881"}} and more`, "cust-881", false},
		{"key given twice, then a syntax error", `{"subject":{"id":"cust-1"},"subject":{"id":"cust-881"},}`, "cust-881", true},
		{"null subject, then a syntax error", `{"subject":null,"subject":{"id":"cust-881"},}`, "cust-881", false},
		{"keys in other case, then a syntax error", `{"SUBJECT":{"Id":"cust-881"},}`, "cust-881", false},
		{"subject after the syntax error", `{"id":"r1","amount":NaN,"subject":{"id":"cust-881"}}`, "", true},
		{"id not a string, then a syntax error", `{"subject":{"id":881},}`, "", false},
		{"subject not an object, then a syntax error", `{"subject":"cust-881",}`, "", false},
		{"subject only nested, then a syntax error", `{"record":{"subject":{"id":"cust-881"}},}`, "", false},
		{"not an object, then a syntax error", `["cust-881",]`, "", false},
		{"empty", ``, "", false},
		{"id given twice", `{"subject":{"id":"cust-1","id":"cust-881"}}`, "cust-881", true},
		{"the same id twice", `{"subject":{"id":"cust-881"},"SUBJECT":{"id":"cust-881"}}`, "cust-881", false},
		{"an id, then a subject of the wrong type", `{"subject":{"id":"cust-1"},"subject":{"id":881}}`, "", true},
		{"an id, then an id of the wrong type, then a syntax error", `{"subject":{"id":"cust-1","id":881},}`, "", true},
		{"an empty id after one", `{"subject":{"id":"cust-1"},"subject":{"id":""}}`, "", true},
		{"another request after the request", `{"subject":{"id":"cust-881"}} {"SUBJECT":{"id":"cust-2"}}`, "cust-881", true},
		{"an escape after the syntax error", `{"subject":{"id":"cust-881"},"x":NaN,"subj\u0065ct":{"id":"cust-2"}}`, "cust-881", true},
		{"no subject after the syntax error", `{"subject":{"id":"cust-881"},"x":NaN,"record":{"name":"Ada"}}`, "cust-881", false},
		{"not an object, naming a subject", `[{"subject":{"id":"cust-881"}},]`, "", true},
		{"an id of the wrong type, then one", `{"subject":{"id":5,"id":"cust-b"}}`, "", true},
		{"a subject of the wrong type, then one", `{"subject":5,"subject":{"id":"cust-b"}}`, "", true},
		{"an array subject, then one, then a syntax error", `{"subject":[{"id":"x"}],"subject":{"id":"cust-b"},}`, "", true},
		{"an object id, then one, then a syntax error", `{"subject":{"id":{"id":"x"},"id":"cust-b"},}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, several := looseSubject([]byte(tt.give)); got != tt.want || several != tt.several {
				t.Errorf("looseSubject(%s) = %q, %v; want %q, %v", tt.give, got, several, tt.want, tt.several)
			}
		})
	}
}
