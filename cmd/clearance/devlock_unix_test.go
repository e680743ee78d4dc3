//go:build unix

package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestLockDevDir: a second clearance dev on the same data directory is
// refused, naming the process that holds it, and the directory is free
// again once the first lets go.
func TestLockDevDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDevDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockDevDir(dir)
	if err == nil || !strings.Contains(err.Error(), "another clearance dev (process "+strconv.Itoa(os.Getpid())+") is running with the data directory "+dir) {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock, err = lockDevDir(dir)
	if err != nil {
		t.Fatalf("lock after the first let go: %v", err)
	}
	unlock()
}
