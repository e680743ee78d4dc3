package audit

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

func TestAppendReadBack(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			l := openTestLog(t, openTestDB(t, b.dsn(t)), testOptions(t))
			want := []*Entry{decidedEntry(1), decidedEntry(2), decidedEntry(3)}
			want[1].Event, want[1].Decision, want[1].Reasons = EventDecided, "deny", []string{"no_transfer_mechanism"}
			want[2].Event, want[2].Time = EventDelivered, want[2].Time.Add(123456789) // sub-µs part dropped
			for i, e := range want {
				seq, err := l.Append(ctx, e)
				if err != nil {
					t.Fatalf("append: %v", err)
				}
				if seq != int64(i+1) {
					t.Errorf("seq = %d, want %d", seq, i+1)
				}
			}
			got, err := l.Query(ctx, Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d entries, want %d", len(got), len(want))
			}
			prev := genesisHash
			for i, g := range got {
				w := want[i].clone()
				w.Sequence, w.PrevHash, w.Hash = int64(i+1), prev, g.Hash
				w.SubjectHMAC = SubjectHMAC(testSubjectKey, want[i].SubjectID)
				w.Hash = computeHash(&w)
				if g.Hash != w.Hash {
					t.Errorf("entry %d hash = %s, want %s", i+1, g.Hash, w.Hash)
				}
				if !entriesEqual(g, w) {
					t.Errorf("entry %d read back as\n%+v\nwant\n%+v", i+1, g, w)
				}
				if g.SubjectHMAC == "" || g.SubjectID != "" {
					t.Errorf("entry %d: subject not replaced by its HMAC", i+1)
				}
				prev = g.Hash
			}
			if want[0].Sequence != 0 || want[0].SubjectID == "" {
				t.Error("Append modified the caller's entry")
			}
			rep, err := l.Verify(ctx, testSigner(t))
			if err != nil || rep.Entries != 3 {
				t.Fatalf("verify: %+v, %v", rep, err)
			}
		})
	}
}

func entriesEqual(a, b Entry) bool {
	return a.Sequence == b.Sequence && a.Time.Equal(b.Time) && a.Event == b.Event &&
		a.RequestID == b.RequestID && a.Source == b.Source && a.Recipient == b.Recipient &&
		a.RecipientCountry == b.RecipientCountry && a.Origin == b.Origin && a.Purpose == b.Purpose &&
		a.Dataset == b.Dataset && a.Decision == b.Decision && slices.Equal(a.Reasons, b.Reasons) &&
		a.LegalBasis == b.LegalBasis && a.AgreementID == b.AgreementID &&
		a.AgreementVersion == b.AgreementVersion && a.Mechanism == b.Mechanism &&
		slices.Equal(a.CategoriesSent, b.CategoriesSent) && len(a.FieldsRemoved) == len(b.FieldsRemoved) &&
		a.KeyRef == b.KeyRef && a.PayloadDigest == b.PayloadDigest &&
		a.RegistryVersion == b.RegistryVersion && a.SubjectHMAC == b.SubjectHMAC &&
		a.PrevHash == b.PrevHash && a.Hash == b.Hash
}

func TestAppendErrors(t *testing.T) {
	db := openTestDB(t, sqliteDSN(t))
	ctx := t.Context()
	ro, err := Open(ctx, db, Options{SubjectKey: testSubjectKey})
	if err != nil {
		t.Fatal(err)
	}
	nokey := testOptions(t)
	nokey.SubjectKey = nil
	closed := openTestLog(t, db, testOptions(t))
	if err := closed.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		log  *Log
		give *Entry
		want error
	}{
		{"read-only", ro, decidedEntry(1), ErrReadOnly},
		{"no event", openTestLog(t, db, testOptions(t)), &Entry{RequestID: "r"}, ErrInvalidEntry},
		{"NUL byte", openTestLog(t, db, testOptions(t)), &Entry{Event: EventRejected, Reasons: []string{"invalid_request: \x00"}}, ErrInvalidEntry},
		{"invalid UTF-8", openTestLog(t, db, testOptions(t)), &Entry{Event: EventRejected, RequestID: "\xff"}, ErrInvalidEntry},
		{"nil entry", openTestLog(t, db, testOptions(t)), nil, ErrInvalidEntry},
		{"subject without key", openTestLog(t, db, nokey), decidedEntry(1), ErrNoSubjectKey},
		{"closed", closed, decidedEntry(1), ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.log.Append(ctx, tt.give); !errors.Is(err, tt.want) {
				t.Errorf("Append() error = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestConcurrentAppend runs many appenders on one log and, separately, two
// logs on separate connections (two broker instances) against one store; the
// chain must stay gap-free and verify. Run with -race.
func TestConcurrentAppend(t *testing.T) {
	const workers, each = 16, 40
	for _, b := range backends {
		for _, instances := range []int{1, 2} {
			t.Run(b.name+"/instances-"+string(rune('0'+instances)), func(t *testing.T) {
				ctx := t.Context()
				dsn := b.dsn(t)
				opts := testOptions(t)
				opts.CheckpointEvery = 100
				logs := make([]*Log, instances)
				for i := range logs {
					logs[i] = openTestLog(t, openTestDB(t, dsn), opts)
				}
				var mu sync.Mutex
				seqs := map[int64]bool{}
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						l := logs[w%instances]
						for i := range each {
							seq, err := l.Append(ctx, decidedEntry(w*each+i))
							if err != nil {
								t.Errorf("append: %v", err)
								return
							}
							mu.Lock()
							if seqs[seq] {
								t.Errorf("sequence %d given twice", seq)
							}
							seqs[seq] = true
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				for _, l := range logs {
					if err := l.Close(ctx); err != nil {
						t.Fatal(err)
					}
				}
				for s := int64(1); s <= workers*each; s++ {
					if !seqs[s] {
						t.Fatalf("sequence %d never acknowledged", s)
					}
				}
				reader := openTestLog(t, openTestDB(t, dsn), Options{SubjectKey: testSubjectKey})
				rep, err := reader.Verify(ctx, testSigner(t))
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				if rep.Entries != workers*each || rep.Checkpoints < 2 || rep.Unsealed != 0 {
					t.Errorf("report = %+v, want %d entries, >= 2 checkpoints, none unsealed", rep, workers*each)
				}
			})
		}
	}
}

// TestAppendKeepsNothing: once Append has returned, the caller may reuse
// the entry, its lists and its map (the broker pools its entries): what
// was appended stays what the entry held then, and the chain verifies.
func TestAppendKeepsNothing(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			l := openTestLog(t, openTestDB(t, b.dsn(t)), testOptions(t))
			e := decidedEntry(1)
			e.Reasons = []string{"kept_reason"}
			e.CategoriesSent = []string{"contact", "address"}
			e.FieldsRemoved = map[string]string{"notes": "unclassified_field"}
			want := e.clone()
			if _, err := l.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
			e.Reasons[0], e.CategoriesSent[1] = "reused", "reused"
			clear(e.FieldsRemoved)
			e.FieldsRemoved["other"] = "reused"
			*e = Entry{FieldsRemoved: e.FieldsRemoved}
			got, err := l.Query(ctx, Filter{})
			if err != nil || len(got) != 1 {
				t.Fatalf("query: %d entries, %v", len(got), err)
			}
			g := got[0]
			if !slices.Equal(g.Reasons, want.Reasons) || !slices.Equal(g.CategoriesSent, want.CategoriesSent) ||
				len(g.FieldsRemoved) != 1 || g.FieldsRemoved["notes"] != "unclassified_field" || g.RequestID != want.RequestID {
				t.Errorf("read back %+v, want the entry as appended %+v", g, want)
			}
			if rep, err := l.Verify(ctx, testSigner(t)); err != nil || rep.Entries != 1 {
				t.Fatalf("verify: %+v, %v", rep, err)
			}
		})
	}
}
