package policy_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
)

// erasureCalls records the calls of an Options.OnErasure; the first fail
// of them fail.
type erasureCalls struct {
	mu    sync.Mutex
	fail  int
	calls []erasureCall
}

type erasureCall struct {
	subject string
	at      time.Time
}

func (c *erasureCalls) onErasure(_ context.Context, subject string, at time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, erasureCall{subject, at})
	if len(c.calls) <= c.fail {
		return errors.New("key store unavailable")
	}
	return nil
}

func (c *erasureCalls) get() []erasureCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]erasureCall(nil), c.calls...)
}

// wait waits until OnErasure was called n times.
func (c *erasureCalls) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(c.get()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("OnErasure called %d times, never %d", len(c.get()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// followUps returns how many events of e's store have erasures not
// followed up yet.
func (e *env) followUps(t *testing.T) int64 {
	t.Helper()
	n, err := e.db.NewSelect().Table("policy_erasure_followups").Count(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFollowedUp waits until e's store holds no erasure to follow up.
func (e *env) waitFollowedUp(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for e.followUps(t) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the erasure was never followed up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func erasureOf(subject string) agreements.Change {
	return agreements.Change{Erasures: []agreements.Erasure{{Subject: subject, At: time.Now().UTC()}}}
}

// TestErasureFollowedUpWithoutRetry: an erasure is stored and in force,
// its follow-up (OnErasure: the subject's key destroyed, its recipients
// told) fails, and the caller (an HTTP client that gave up) never tries
// again. An instance's resync runs the follow-up again once the grace is
// over, until it succeeds, and then no more.
func TestErasureFollowedUpWithoutRetry(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			defer policy.SetPendingGrace(time.Hour)()
			e := newEnv(t, st.dsn(t))
			calls := &erasureCalls{fail: 1}
			e.onErasure, e.resync = calls.onErasure, 50*time.Millisecond
			n := e.startApplied(t, brokertest.Connect(t, brokertest.StartNATS(t)), registryDir(t))
			erase := erasureOf("cust-881")
			if _, err := n.live.Change(t.Context(), erase); err == nil || errors.Is(err, policy.ErrAlreadyErased) {
				t.Fatalf("Change with OnErasure failing: %v", err)
			}
			policy.SetPendingGrace(0)
			calls.wait(t, 2)
			e.waitFollowedUp(t)
			time.Sleep(300 * time.Millisecond) // a few more rounds
			got := calls.get()
			if len(got) != 2 {
				t.Fatalf("OnErasure called %d times, want 2 (the failure, the late follow-up)", len(got))
			}
			if got[1].subject != "cust-881" || !got[1].at.Equal(erase.Erasures[0].At) {
				t.Errorf("late follow-up OnErasure(%q, %s), want the recorded erasure at %s", got[1].subject, got[1].at, erase.Erasures[0].At)
			}
		})
	}
}

// TestErasureFollowedUpByAnotherInstance: the instance that stored an
// erasure stops (is killed) while its follow-up runs. An instance started
// later on the same store runs it.
func TestErasureFollowedUpByAnotherInstance(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			defer policy.SetPendingGrace(time.Hour)()
			e := newEnv(t, st.dsn(t))
			entered, killed := make(chan struct{}), make(chan struct{})
			e.onErasure = func(context.Context, string, time.Time) error {
				close(entered)
				<-killed
				return errors.New("instance killed")
			}
			nc := brokertest.Connect(t, brokertest.StartNATS(t))
			dir := registryDir(t)
			a := e.startApplied(t, nc, dir)
			erase := erasureOf("cust-881")
			changed := make(chan error, 1)
			go func() {
				_, err := a.live.Change(t.Context(), erase)
				changed <- err
			}()
			<-entered
			a.live.Stop()

			calls := &erasureCalls{}
			e.onErasure, e.resync = calls.onErasure, 50*time.Millisecond
			policy.SetPendingGrace(0)
			e.start(t, nc, load(t, dir))
			calls.wait(t, 1)
			e.waitFollowedUp(t)
			close(killed)
			if err := <-changed; err == nil {
				t.Error("Change of the killed instance succeeded")
			}
			got := calls.get()
			if len(got) != 1 || got[0].subject != "cust-881" || !got[0].at.Equal(erase.Erasures[0].At) {
				t.Fatalf("the other instance's OnErasure calls %+v, want cust-881 at %s once", got, erase.Erasures[0].At)
			}
		})
	}
}

// TestErasureFollowUpRows: a change is kept as one to follow up only
// while OnErasure has not succeeded for its erasures.
func TestErasureFollowUpRows(t *testing.T) {
	consent := agreements.Change{Consents: []agreements.Consent{{Subject: "cust-881", Purpose: "marketing", GrantedAt: at}}}
	tests := []struct {
		name      string
		give      agreements.Change
		onErasure bool
		fail      int
		want      int64
	}{
		{"erasure followed up", erasureOf("cust-881"), true, 0, 0},
		{"erasure not followed up", erasureOf("cust-881"), true, 1, 1},
		{"consent", consent, true, 0, 0},
		{"erasure without OnErasure", erasureOf("cust-881"), false, 0, 0},
	}
	for _, st := range stores {
		for _, tt := range tests {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t, st.dsn(t))
				if tt.onErasure {
					e.onErasure = (&erasureCalls{fail: tt.fail}).onErasure
				}
				n := e.startApplied(t, brokertest.Connect(t, brokertest.StartNATS(t)), registryDir(t))
				_, err := n.live.Change(t.Context(), tt.give)
				if (err != nil) != (tt.fail > 0) {
					t.Fatalf("Change: %v", err)
				}
				if got := e.followUps(t); got != tt.want {
					t.Fatalf("%d changes to follow up, want %d", got, tt.want)
				}
			})
		}
	}
}

// TestErasureRetryClearsFollowUp: a caller's retry of an erasure whose
// follow-up failed, under the same request id or as an erasure in force
// already, runs the follow-up again and, once it succeeds, leaves nothing
// for a later one.
func TestErasureRetryClearsFollowUp(t *testing.T) {
	tests := []struct {
		name  string
		retry func(t *testing.T, n *node)
	}{
		{"same request", func(t *testing.T, n *node) {
			if rc, retry := n.live.RecordErasure(t.Context(), "cust-881", nil, "er-1", "http"); retry || rc.Status != policy.StatusRecorded {
				t.Fatalf("retry: %+v, retry %v", rc, retry)
			}
		}},
		{"erasure in force", func(t *testing.T, n *node) {
			if _, err := n.live.Change(t.Context(), erasureOf("cust-881")); !errors.Is(err, policy.ErrAlreadyErased) {
				t.Fatalf("retry: %v, want ErrAlreadyErased", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, brokertest.SQLiteDSN(t))
			calls := &erasureCalls{fail: 1}
			e.onErasure = calls.onErasure
			n := e.startApplied(t, brokertest.Connect(t, brokertest.StartNATS(t)), registryDir(t))
			if _, retry := n.live.RecordErasure(t.Context(), "cust-881", nil, "er-1", "http"); !retry {
				t.Fatal("first attempt with OnErasure failing: not told to retry")
			}
			if got := e.followUps(t); got != 1 {
				t.Fatalf("%d erasures to follow up after the failure, want 1", got)
			}
			tt.retry(t, n)
			if got := len(calls.get()); got != 2 {
				t.Fatalf("OnErasure called %d times, want 2", got)
			}
			if got := e.followUps(t); got != 0 {
				t.Fatalf("%d erasures to follow up after the retry, want 0", got)
			}
		})
	}
}
