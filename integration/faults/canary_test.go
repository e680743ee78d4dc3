package faults

import (
	"bytes"
	"encoding/base64"
	"fmt"
)

// Canaries are personal values planted in the requests. None may appear, in
// clear or base64 (standard or URL alphabet, at any alignment), anywhere
// outside the recipient's decrypted payload.
var canaries = []string{
	"Quirinus Zyxwarbler",        // name
	"quirinus.zyxwarbler@canary", // email
	"+4930 5550199",              // phone
	"Zyxwarblerweg 17",           // address
	"zyxwarbler wheelchair",      // special category (never sent)
	"zyxgift secret",             // unclassified field (never sent)
	"zyxsubj-",                   // subject ids (only their HMAC is stored)
	"zyxcust-",                   // customer ids of device records
	"359999000011118",            // device IMEI
}

// canaryPatterns returns each canary in clear and in every base64 form it
// can take inside a longer encoded text.
func canaryPatterns() map[string]string {
	out := map[string]string{}
	for _, c := range canaries {
		out[c] = c + " (clear)"
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			for _, p := range base64Forms(enc, []byte(c)) {
				out[p] = c + " (base64)"
			}
		}
	}
	return out
}

// base64Forms encodes s at the three byte alignments it may have inside a
// longer text and keeps only the characters that depend on s alone.
func base64Forms(enc *base64.Encoding, s []byte) []string {
	var out []string
	for shift := range 3 {
		buf := append(bytes.Repeat([]byte{0}, shift), s...)
		e := enc.EncodeToString(buf)
		start := 0
		if shift > 0 {
			start = (shift*8 + 5) / 6 // characters touched by the padding prefix
		}
		end := (len(buf) * 8) / 6 // full characters only
		if end-start >= 8 {
			out = append(out, e[start:end])
		}
	}
	return out
}

// findCanaries returns a description of each canary found in data.
func findCanaries(where string, data []byte) []string {
	var hits []string
	for p, what := range canaryPatterns() {
		if i := bytes.Index(data, []byte(p)); i >= 0 {
			hits = append(hits, fmt.Sprintf("%s: %s at byte %d", where, what, i))
		}
	}
	return hits
}
