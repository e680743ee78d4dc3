package policy

import "time"

// SetSnapshotPart sets the size of a snapshot's parts and returns a
// function that restores it.
func SetSnapshotPart(size int) (restore func()) {
	old := snapshotPart.Swap(int64(size))
	return func() { snapshotPart.Store(old) }
}

// SetPendingGrace sets how long an event's writer has to audit it before
// another look writes what is missing, and returns a function that
// restores it.
func SetPendingGrace(d time.Duration) (restore func()) {
	old := pendingGrace.Swap(int64(d))
	return func() { pendingGrace.Store(old) }
}
