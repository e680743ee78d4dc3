package vaulttest

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestStopStart(t *testing.T) {
	s := Start(t)
	c := s.Client()
	s.Write("transit/keys/k", map[string]any{"type": "aes256-gcm96"})
	if _, err := c.Sys().Health(); err != nil {
		t.Fatalf("health: %v", err)
	}
	s.Stop()
	if _, err := c.Sys().Health(); err == nil {
		t.Fatal("health answered while stopped")
	}
	s.Start()
	if _, err := c.Sys().Health(); err != nil {
		t.Fatalf("health after restart: %v", err)
	}
	mounts, err := c.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts["transit/"]; !ok {
		t.Fatal("transit not enabled after restart")
	}
}

func TestTLS(t *testing.T) {
	s := Start(t, WithTLS())
	if s.CAFile == "" || s.Addr[:8] != "https://" {
		t.Fatalf("addr %s, ca %q", s.Addr, s.CAFile)
	}
	if _, err := s.Client().Sys().Health(); err != nil {
		t.Fatalf("health over TLS: %v", err)
	}
}

func TestLaunchWithoutBinary(t *testing.T) {
	t.Setenv(EnvBinary, filepath.Join(t.TempDir(), "no-vault"))
	_, err := Launch(context.Background(), Config{})
	if !errors.Is(err, ErrNoBinary) || !strings.Contains(err.Error(), "scripts/vault-binary.sh") {
		t.Fatalf("Launch without a binary: %v, want ErrNoBinary naming the script", err)
	}
}

func TestLaunchAndStop(t *testing.T) {
	p, err := Launch(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := c.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts["transit/"]; !ok {
		t.Fatal("transit not enabled")
	}
	p.Stop()
	p.Stop() // a second Stop returns at once
	if _, err := c.Sys().Health(); err == nil {
		t.Fatal("health answered after Stop")
	}
}
