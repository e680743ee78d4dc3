package connectors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"gopkg.in/yaml.v3"
)

// Raw is connector configuration not yet decoded: a YAML document or node, or
// JSON. DecodeStrict decodes into v and treats unknown keys as errors.
type Raw interface {
	DecodeStrict(v any) error
}

// YAML returns the YAML document data as a Raw config.
func YAML(data []byte) Raw { return yamlBytes(data) }

// YAMLNode returns a node of a larger YAML document (the connector's entry in
// the broker config) as a Raw config.
func YAMLNode(n *yaml.Node) Raw { return yamlNode{n} }

// JSON returns the JSON object data as a Raw config.
func JSON(data []byte) Raw { return jsonBytes(data) }

type yamlBytes []byte

func (y yamlBytes) DecodeStrict(v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(y))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty document leaves the defaults
		}
		return fmt.Errorf("yaml: %w", err)
	}
	return nil
}

type yamlNode struct{ n *yaml.Node }

func (y yamlNode) DecodeStrict(v any) error {
	if y.n == nil {
		return nil
	}
	// yaml.Node.Decode cannot reject unknown keys; re-encode the node and
	// decode it with a strict decoder. Line numbers in errors are relative
	// to the node, so they are reported with the node's own line.
	data, err := yaml.Marshal(y.n)
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	if err := yamlBytes(data).DecodeStrict(v); err != nil {
		return fmt.Errorf("at line %d: %w", y.n.Line, err)
	}
	return nil
}

type jsonBytes []byte

func (j jsonBytes) DecodeStrict(v any) error {
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	if dec.More() {
		return errors.New("json: data after the config object")
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("10s",
// "1m30s") in YAML and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration: %w", n.Line, err)
	}
	return d.parse(s)
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"10s\": %w", err)
	}
	return d.parse(s)
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}
