package e2e

import (
	"context"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/clearance-broker/clearance/keys"
)

// regionVault starts a Vault dev server for one region. Its transit
// encryption key is dataKey (32 bytes) imported the way an operator brings
// one key to several regions (transit BYOK import); nil leaves it a key of
// the region's own. The signing key is always the region's own.
func regionVault(t *testing.T, dataKey []byte) *keys.Vault {
	t.Helper()
	s := vaulttest.Start(t)
	if dataKey == nil {
		s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	} else {
		importTransitKey(t, s, "clearance-data", dataKey)
	}
	s.Write("transit/keys/clearance-signing", map[string]any{"type": "ecdsa-p256"})
	path := filepath.Join(t.TempDir(), "vault-token")
	if err := os.WriteFile(path, []byte(s.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := keys.NewVault(t.Context(), keys.VaultConfig{
		Address: s.Addr, Auth: keys.VaultAuth{TokenFile: path}, Timeout: 5 * time.Second,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("vault: %v", err)
	}
	t.Cleanup(func() { _ = v.Close(context.Background()) })
	return v
}

// importTransitKey imports an AES-256 key into transit: the key is wrapped
// with a fresh AES key (RFC 5649 key wrap with padding), which is encrypted
// to Vault's RSA wrapping key with OAEP-SHA256.
func importTransitKey(t *testing.T, s *vaulttest.Server, name string, key []byte) {
	t.Helper()
	sec, err := s.Client().Logical().Read("transit/wrapping_key")
	if err != nil || sec == nil {
		t.Fatalf("transit wrapping key: %v", err)
	}
	block, _ := pem.Decode([]byte(sec.Data["public_key"].(string)))
	if block == nil {
		t.Fatal("transit wrapping key: not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ephemeral := make([]byte, 32)
	if _, err := rand.Read(ephemeral); err != nil {
		t.Fatal(err)
	}
	wrappedEphemeral, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), ephemeral, nil)
	if err != nil {
		t.Fatal(err)
	}
	wrappedKey := kwpWrap(t, ephemeral, key)
	s.Write("transit/keys/"+name+"/import", map[string]any{
		"ciphertext":    base64.StdEncoding.EncodeToString(append(wrappedEphemeral, wrappedKey...)),
		"hash_function": "SHA256",
		"type":          "aes256-gcm96",
	})
}

// kwpWrap is AES key wrap with padding (RFC 5649) for inputs longer than
// eight bytes.
func kwpWrap(t *testing.T, kek, plain []byte) []byte {
	t.Helper()
	c, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	padded := make([]byte, (len(plain)+7)/8*8)
	copy(padded, plain)
	n := len(padded) / 8
	var a [8]byte
	copy(a[:4], []byte{0xA6, 0x59, 0x59, 0xA6})
	binary.BigEndian.PutUint32(a[4:], uint32(len(plain)))
	r := make([][8]byte, n)
	for i := range r {
		copy(r[i][:], padded[8*i:])
	}
	var buf [16]byte
	for j := range 6 {
		for i := range n {
			copy(buf[:8], a[:])
			copy(buf[8:], r[i][:])
			c.Encrypt(buf[:], buf[:])
			tval := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buf[:8])^tval)
			copy(r[i][:], buf[8:])
		}
	}
	out := append([]byte(nil), a[:]...)
	for i := range r {
		out = append(out, r[i][:]...)
	}
	return out
}
