package keys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
)

// Rewrapper brings sealed messages up to the latest version of its
// encryption key without their plaintext leaving it; *Vault satisfies it
// (transit/rewrap). A message already at the latest version comes back
// unchanged; the result has one entry per input, in order.
type Rewrapper interface {
	Rewrap(ctx context.Context, sealed [][]byte) ([][]byte, error)
}

// RewrapEach rewraps sealed in one request, or, when the service refuses
// it for a message's sake (KeyFault), one message at a time: one it
// refuses for its own sake comes back nil, and the first such error is
// returned as fault. Any other error (the service down, the token without
// the right) is returned as err, and nothing is rewrapped.
func RewrapEach(ctx context.Context, rw Rewrapper, sealed [][]byte) (out [][]byte, fault, err error) {
	out, err = rw.Rewrap(ctx, sealed)
	switch {
	case err == nil && len(out) != len(sealed):
		return nil, nil, fmt.Errorf("%d results for %d messages", len(out), len(sealed))
	case err == nil:
		return out, nil, nil
	case !KeyFault(err):
		return nil, nil, err
	}
	out = make([][]byte, len(sealed))
	for i := range sealed {
		one, err := rw.Rewrap(ctx, sealed[i:i+1])
		switch {
		case err == nil && len(one) == 1:
			out[i] = one[0]
		case err == nil:
			return nil, nil, fmt.Errorf("%d results for 1 message", len(one))
		case KeyFault(err):
			fault = cmp.Or(fault, err)
		default:
			return nil, nil, err
		}
	}
	return out, fault, nil
}

// KeyFault reports whether err refuses a sealed message (or wrapped key)
// for its own sake: altered, malformed, under another key, or under a
// version already retired. Rewrapping the others goes on.
func KeyFault(err error) bool {
	return errors.Is(err, ErrNotAuthentic) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrKeyRetired)
}

// Rewrap brings stored sealed messages up to the latest version of the
// encryption key without exposing their plaintext outside this process: the
// wrapped data keys are re-encrypted with transit/rewrap (one batched request
// for all distinct data keys), and each message is re-sealed under its same
// data key with the new header and a fresh nonce. Messages whose data key is
// already at the latest version come back unchanged. The result has one
// entry per input, in order. Errors are as for Open; on error nothing is
// returned.
func (v *Vault) Rewrap(ctx context.Context, sealed [][]byte) ([][]byte, error) {
	const op = "transit rewrap"
	type item struct {
		parts compactParts
		hdr   envelopeHeader
	}
	items := make([]item, len(sealed))
	var distinct []string
	seen := map[string]bool{}
	for i, msg := range sealed {
		p, err := parseCompact(msg)
		if err != nil {
			return nil, newError(op, nil, fmt.Errorf("message %d: %w", i, err))
		}
		h, err := parseHeader(p.header)
		if err != nil {
			return nil, newError(op, nil, fmt.Errorf("message %d: %w", i, err))
		}
		if err := checkKeyRef(v.KeyRef(), h.KRef, h.WK); err != nil {
			return nil, newError(op, nil, fmt.Errorf("message %d: %w", i, err))
		}
		items[i] = item{p, h}
		if !seen[h.WK] {
			seen[h.WK] = true
			distinct = append(distinct, h.WK)
		}
	}
	if len(distinct) == 0 {
		return [][]byte{}, nil
	}
	inputs := make([]map[string]any, len(distinct))
	for i, wk := range distinct {
		inputs[i] = map[string]any{"ciphertext": wk}
	}
	sec, err := v.writeBatch(ctx, op, v.path("rewrap", v.cfg.EncryptionKey), map[string]any{"batch_input": inputs})
	if err != nil {
		return nil, err
	}
	results, _ := sec.Data["batch_results"].([]any)
	if len(results) != len(distinct) {
		return nil, newError(op, nil, fmt.Errorf("vault returned %d results for %d inputs", len(results), len(distinct)))
	}
	newWK := make(map[string]string, len(distinct))
	for i, r := range results {
		m, _ := r.(map[string]any)
		if e, _ := m["error"].(string); e != "" {
			return nil, classify(op, &vaultItemError{msg: e})
		}
		ct, _ := m["ciphertext"].(string)
		if _, ok := wrappedVersion(ct); !ok {
			return nil, newError(op, nil, errors.New("unexpected ciphertext format"))
		}
		newWK[distinct[i]] = ct
	}
	out := make([][]byte, len(sealed))
	for i, it := range items {
		nw := newWK[it.hdr.WK]
		oldVer, _ := wrappedVersion(it.hdr.WK)
		if ver, _ := wrappedVersion(nw); ver <= oldVer {
			// Already at the latest version: transit re-encrypts anyway,
			// but the stored message stays as it is.
			out[i] = sealed[i]
			continue
		}
		aead, err := v.env.unwrap(ctx, it.hdr, string(it.parts.header))
		if err != nil {
			return nil, err
		}
		pt, err := openWith(aead, it.parts)
		if err != nil {
			return nil, err
		}
		ver, _ := wrappedVersion(nw)
		header, err := encodeHeader(fmt.Sprintf("%s:v%d", v.KeyRef(), ver), nw)
		if err != nil {
			return nil, err
		}
		out[i], err = sealWith(aead, []byte(header), pt)
		clear(pt)
		if err != nil {
			return nil, err
		}
		v.env.opened.put(nw, header, aead)
	}
	return out, nil
}

// vaultItemError is a per-item error inside a batch response; Vault answers
// the whole batch with 200 (or 400) and reports item failures inline.
type vaultItemError struct{ msg string }

func (e *vaultItemError) Error() string { return "vault batch item: " + e.msg }
