package natsregion

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultSubjectPrefix is the subject prefix deliveries are published under.
const DefaultSubjectPrefix = "clearance.region"

// Header names set on every published message, besides Nats-Msg-Id.
const (
	HeaderKind        = "Clearance-Kind"
	HeaderContentType = "Content-Type"
)

// ErrInvalidSubject is wrapped by errors for a prefix or recipient that
// cannot form a NATS subject.
var ErrInvalidSubject = errors.New("invalid subject")

// Subject returns the subject a delivery for recipient is published on:
// prefix + "." + recipient. The recipient must be one subject token.
func Subject(prefix, recipient string) (string, error) {
	if err := checkToken(recipient); err != nil {
		return "", fmt.Errorf("recipient %q: %w", recipient, err)
	}
	return prefix + "." + recipient, nil
}

// SubjectFilter returns the filter that matches every delivery under prefix,
// for the receiving side's stream or subscription.
func SubjectFilter(prefix string) string { return prefix + ".>" }

// Recipient returns the recipient of a message published on subject under
// prefix, or false when subject is not a delivery subject.
func Recipient(prefix, subject string) (string, bool) {
	r, ok := strings.CutPrefix(subject, prefix+".")
	if !ok || checkToken(r) != nil {
		return "", false
	}
	return r, true
}

// CheckPrefix reports whether prefix is a valid literal subject prefix.
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("empty prefix: %w", ErrInvalidSubject)
	}
	for _, tok := range strings.Split(prefix, ".") {
		if err := checkToken(tok); err != nil {
			return fmt.Errorf("prefix %q: %w", prefix, err)
		}
	}
	return nil
}

func checkToken(tok string) error {
	if tok == "" {
		return fmt.Errorf("empty token: %w", ErrInvalidSubject)
	}
	if strings.ContainsAny(tok, ".*> \t\r\n") {
		return fmt.Errorf("wildcard, dot or space in token: %w", ErrInvalidSubject)
	}
	return nil
}

// StreamConfig returns the configuration of a stream that receives every
// delivery under prefix: file storage, the given replicas, and a duplicate
// window within which a redelivered request id is stored once. The sending
// side creates it with ensure_stream; a receiving region can create it the
// same way.
func StreamConfig(name, prefix string, replicas int, duplicateWindow time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{SubjectFilter(prefix)},
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		Duplicates: duplicateWindow,
	}
}
