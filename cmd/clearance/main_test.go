package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeListsEveryCommand: the README's command table names every
// command the binary has (three were missing from it once).
func TestReadmeListsEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n## Commands\n")
	if !ok {
		t.Fatal("no Commands section in the README")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	for name := range commands() {
		if !strings.Contains(table, "| `clearance "+name+" ") && !strings.Contains(table, "| `clearance "+name+"`") {
			t.Errorf("the README's Commands table has no row for clearance %s", name)
		}
	}
}
