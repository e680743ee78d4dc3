package broker

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
)

// marshalPayload is the encoding newPayload replaced: json.Marshal of a
// Payload.
func marshalPayload(req *agreements.Request, d *agreements.Decision) ([]byte, error) {
	return json.Marshal(Payload{
		RequestID: req.ID, Source: req.Source, Recipient: req.Recipient, Purpose: req.Purpose, Dataset: req.Dataset,
		Agreement: d.Agreement, LegalOrder: d.LegalOrder, Mechanism: d.Mechanism, RetentionDays: d.RetentionDays,
		Record: d.Record,
	})
}

// TestPayloadMatchesEncodingJSON holds newPayload to json.Marshal of a
// Payload, byte for byte: every example request decided over the example
// registry, and hand-made decisions with and without an agreement, a legal
// order and a retention period, and records with characters JSON escapes.
func TestPayloadMatchesEncodingJSON(t *testing.T) {
	// used is a buffer as the pool hands it back: emptied, its old bytes
	// still behind its length.
	used := bytes.Repeat([]byte("x"), 4096)[:0]
	check := func(name string, req *agreements.Request, d *agreements.Decision) {
		t.Helper()
		want, werr := marshalPayload(req, d)
		got, gerr := newPayload(nil, req, d, 0)
		if werr != nil || gerr != nil || !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s (%v)\nwant %s (%v)", name, got, gerr, want, werr)
		}
		if again, err := newPayload(used, req, d, 0); err != nil || !bytes.Equal(again, want) {
			t.Errorf("%s, into a used buffer:\n got %s (%v)\nwant %s", name, again, err, want)
		}
	}
	reg, err := agreements.Load(filepath.Join("..", "examples", "registry"))
	if err != nil {
		t.Fatal(err)
	}
	engine := agreements.NewEngine(reg)
	files, _ := filepath.Glob(filepath.Join("..", "examples", "requests", "*.json"))
	if len(files) == 0 {
		t.Fatal("no example requests")
	}
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	allowed := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		req, err := agreements.ParseRequest(data)
		if err != nil {
			continue
		}
		d := engine.Decide(req, at)
		if d.Allowed() {
			allowed++
			check(filepath.Base(f), req, d)
		}
		// The whole record, as if nothing were removed.
		check(filepath.Base(f)+"/whole", req, &agreements.Decision{Mechanism: "domestic", Record: req.Record})
	}
	if allowed == 0 {
		t.Fatal("no example request allowed: the test would check no minimised record")
	}
	req := &agreements.Request{ID: "r-<1>&\u2028", Source: "src\"\\", Recipient: "rcp", Purpose: "p\x01", Dataset: "ds\xff"}
	var nested map[string]any
	dec := json.NewDecoder(bytes.NewReader([]byte(`{"b":[1,-2.5e3,"x<y",null,true,{"z":{}}],"a":"é\u2029","":[],"n":0}`)))
	dec.UseNumber()
	if err := dec.Decode(&nested); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]*agreements.Decision{
		"agreement":       {Agreement: &agreements.AgreementRef{ID: "dpa-x", Version: 3}, Mechanism: "scc", RetentionDays: 30, Record: nested},
		"legal order":     {LegalOrder: "order-7", Mechanism: "art_49", Record: map[string]any{"k": "v"}},
		"nil record":      {Mechanism: "domestic"},
		"empty record":    {Mechanism: "", Record: map[string]any{}},
		"negative fields": {Agreement: &agreements.AgreementRef{ID: "", Version: -1}, RetentionDays: -5, Record: nested},
	} {
		check(name, req, d)
	}
}

// BenchmarkPayload encodes the payload of the harness's 1 KB allowed request
// (examples/requests/01, its record padded to about 1 KB) with newPayload
// and, as the baseline of the same run, with json.Marshal.
func BenchmarkPayload(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "requests", "01-delivery-eea-allow.json"))
	if err != nil {
		b.Fatal(err)
	}
	req, err := agreements.ParseRequest(data)
	if err != nil {
		b.Fatal(err)
	}
	rec := map[string]any{}
	for k, v := range req.Record {
		rec[k] = v
	}
	rec["notes"] = string(bytes.Repeat([]byte("leave at the door, ring twice. "), 24))
	d := &agreements.Decision{Agreement: &agreements.AgreementRef{ID: "dpa-swiftship-de", Version: 2}, Mechanism: "domestic", RetentionDays: 90, Record: rec}
	for _, bc := range []struct {
		name string
		enc  func(*agreements.Request, *agreements.Decision) ([]byte, error)
	}{{"newPayload", func(r *agreements.Request, d *agreements.Decision) ([]byte, error) {
		return newPayload(nil, r, d, len(data)+750)
	}},
		{"json.Marshal", marshalPayload}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.enc(req, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReceiptMatchesEncodingJSON holds Receipt.appendJSON to json.Marshal.
func TestReceiptMatchesEncodingJSON(t *testing.T) {
	for _, r := range []Receipt{
		{},
		{RequestID: "ord-1", Decision: "allow", Reasons: []string{}, AuditSequence: 42, Status: StatusDelivered},
		{RequestID: "r<&>\u2028\"\\\x01\xff", Decision: "deny", Reasons: []string{"no_consent", "invalid_request: id: holds control characters"}, AuditSequence: -1, Status: StatusRejected},
	} {
		want, err := json.Marshal(r)
		if got := r.appendJSON(nil); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%+v:\n got %s\nwant %s (%v)", r, got, want, err)
		}
	}
}
