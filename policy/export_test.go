package policy

// SetSnapshotPart sets the size of a snapshot's parts and returns a
// function that restores it.
func SetSnapshotPart(size int) (restore func()) {
	old := snapshotPart.Swap(int64(size))
	return func() { snapshotPart.Store(old) }
}
