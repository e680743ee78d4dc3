//go:build !unix

package main

// lockDevDir does not lock the data directory on systems without flock:
// start one clearance dev per --dir there.
func lockDevDir(string) (func(), error) { return func() {}, nil }
