package audit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestVerifyHeadMovedBack: a thief who rewrites entries and their hashes,
// removes the checkpoints that would tell, and moves the chain's head row
// back over them must not have them pass as entries appended while verify
// ran (which no cadence holds): they lie past the head as it is once the
// walk ends, and are named as inserted. Entries really appended during the
// walk move the head with them and still verify.
func TestVerifyHeadMovedBack(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range []struct {
				name      string
				from      int64
				checks    string
				head      string
				wantFirst int64
			}{
				{"back to a checkpoint", 11, "DELETE FROM audit_checkpoints WHERE seq > 10",
					"UPDATE audit_head SET seq = 10, hash = (SELECT hash FROM audit_entries WHERE seq = 10)", 11},
				{"back to the start", 1, "DELETE FROM audit_checkpoints",
					"UPDATE audit_head SET seq = 0, hash = '" + genesisHash + "'", 1},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ctx := t.Context()
					db := openTestDB(t, b.dsn(t))
					writeCadenceLog(t, db)
					if err := rewriteFrom(ctx, db, tc.from); err != nil {
						t.Fatal(err)
					}
					for _, q := range []string{tc.checks, tc.head} {
						if _, err := db.ExecContext(ctx, q); err != nil {
							t.Fatal(err)
						}
					}
					rep, err := readerAt(t, db, testTime.Add(time.Hour)).VerifyWith(ctx, testSigner(t), cadenceOptions)
					var te *TamperError
					if !errors.As(err, &te) || te.Finding != FindingInserted || te.Sequence != tc.wantFirst {
						t.Fatalf("verify = %+v, %v; want entries from %d inserted", rep, err, tc.wantFirst)
					}
					checkNoPersonalData(t, te)
				})
			}
		})
	}
}

// TestVerifyForgedChainsRow: an audit_chains row no log writes (a number
// of chains past MaxChains, a fork before the first entry) is refused by
// verify, as an edited table, instead of sizing its walk from it.
func TestVerifyForgedChainsRow(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, row := range [][2]int64{{1 << 50, 45}, {MaxChains + 1, 45}, {2, -5}} {
				ctx := t.Context()
				db := openTestDB(t, b.dsn(t))
				writeCadenceLog(t, db)
				if _, err := db.ExecContext(ctx, "INSERT INTO audit_chains (id, chains, fork_seq) VALUES (1, ?, ?)", row[0], row[1]); err != nil {
					t.Fatal(err)
				}
				_, err := readerAt(t, db, testTime).VerifyWith(ctx, testSigner(t), cadenceOptions)
				if err == nil || !strings.Contains(err.Error(), "the audit_chains row was edited") {
					t.Errorf("chains %d from %d: verify = %v", row[0], row[1], err)
				}
			}
		})
	}
}

// TestVerifyChainCutBack: on a log written as two chains, a thief removes
// every entry of chain 1 since the fork, with its checkpoints, and moves
// its head row back to the fork, while chain 0 goes on around the holes.
// Chain 0's checkpoints recorded chain 1's heads, so verify finds them
// missing, without the checkpoint copies. An honest log verifies.
func TestVerifyChainCutBack(t *testing.T) {
	ctx := t.Context()
	db, l := writeForkedLog(t)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := readerAt(t, db, testTime).VerifyWith(ctx, testSigner(t), cadenceOptions); err != nil {
		t.Fatalf("the honest log: %v", err)
	}
	ly, err := loadLayout(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"DELETE FROM audit_entries WHERE seq > ? AND (seq - ?) % 2 = 1",
		"DELETE FROM audit_checkpoints WHERE seq > ? AND (seq - ?) % 2 = 1",
	} {
		if _, err := db.ExecContext(ctx, q, ly.fork, ly.fork); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "UPDATE audit_head SET seq = ?, hash = (SELECT hash FROM audit_entries WHERE seq = ?) WHERE id = 2",
		ly.fork+1-2, ly.fork); err != nil {
		t.Fatal(err)
	}
	rep, err := readerAt(t, db, testTime).VerifyWith(ctx, testSigner(t), cadenceOptions)
	var te *TamperError
	if !errors.As(err, &te) || te.Finding != FindingRemoved {
		t.Fatalf("verify after chain 1 was cut back = %+v, %v; want entries removed", rep, err)
	}
	checkNoPersonalData(t, te)
}
