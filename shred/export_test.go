package shred

import "github.com/nats-io/nats.go"

// HearDestroyed hands k the broadcast of the destruction of the subject
// whose HMAC is sh, as its subscription receives it from another instance.
func HearDestroyed(k *Keyring, sh string) {
	k.heardDestroyed(&nats.Msg{Subject: invalidateSubject, Data: []byte(sh)})
}
