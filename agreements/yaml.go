package agreements

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks yaml.Node trees of one file and collects every problem with
// its file, line and key path instead of stopping at the first.
type decoder struct {
	file string
	errs []error
}

func (d *decoder) fail(n *yaml.Node, key string, class error, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &LoadError{File: d.file, Line: line, Key: key, Err: class, Detail: fmt.Sprintf(format, args...)})
}

// field is one key of a mapping with its value node.
type field struct {
	name string
	key  *yaml.Node
	val  *yaml.Node
}

// fields returns the pairs of a mapping node, reporting non-mappings,
// aliases, non-string keys, duplicate keys and keys not in allowed. Unknown
// and duplicate keys are reported and left out.
func (d *decoder) fields(n *yaml.Node, path string, allowed ...string) []field {
	if !d.kind(n, path, yaml.MappingNode, "a mapping") {
		return nil
	}
	seen := make(map[string]bool, len(n.Content)/2)
	out := make([]field, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!float" && k.Tag != "!!bool") {
			d.fail(k, path, ErrSyntax, "keys must be plain strings")
			continue
		}
		name := k.Value
		kp := join(path, name)
		if seen[name] {
			d.fail(k, kp, ErrDuplicate, "key defined twice in the same mapping")
			continue
		}
		seen[name] = true
		if allowed != nil && !contains(allowed, name) {
			d.fail(k, kp, ErrUnknownKey, "not one of %v", allowed)
			continue
		}
		out = append(out, field{name: name, key: k, val: v})
	}
	return out
}

// kind checks the node kind, rejecting anchors and aliases, which a registry
// does not use (zones are the way to share lists).
func (d *decoder) kind(n *yaml.Node, path string, want yaml.Kind, what string) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.fail(n, path, ErrSyntax, "anchors and aliases are not supported")
		return false
	}
	if n.Kind != want {
		d.fail(n, path, ErrSyntax, "want %s", what)
		return false
	}
	return true
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// str decodes a scalar as a string; numbers and booleans are refused so that
// a typo such as "version: yes" does not pass silently.
func (d *decoder) str(n *yaml.Node, path string) string {
	if !d.kind(n, path, yaml.ScalarNode, "a string") {
		return ""
	}
	if n.Tag != "!!str" && n.Tag != "!!timestamp" {
		d.fail(n, path, ErrSyntax, "want a string, got %s", tagName(n.Tag))
		return ""
	}
	return n.Value
}

func (d *decoder) boolean(n *yaml.Node, path string) bool {
	if !d.kind(n, path, yaml.ScalarNode, "true or false") {
		return false
	}
	if n.Tag != "!!bool" {
		d.fail(n, path, ErrSyntax, "want true or false, got %s", tagName(n.Tag))
		return false
	}
	b, err := strconv.ParseBool(n.Value)
	if err != nil {
		d.fail(n, path, ErrSyntax, "want true or false")
	}
	return b
}

func (d *decoder) integer(n *yaml.Node, path string) int {
	if !d.kind(n, path, yaml.ScalarNode, "an integer") {
		return 0
	}
	if n.Tag != "!!int" {
		d.fail(n, path, ErrSyntax, "want an integer, got %s", tagName(n.Tag))
		return 0
	}
	v, err := strconv.ParseInt(n.Value, 0, 32)
	if err != nil {
		d.fail(n, path, ErrInvalidValue, "integer out of range")
		return 0
	}
	return int(v)
}

// date decodes a whole day written as YYYY-MM-DD, as midnight UTC.
func (d *decoder) date(n *yaml.Node, path string) time.Time {
	if !d.kind(n, path, yaml.ScalarNode, "a date (YYYY-MM-DD)") {
		return time.Time{}
	}
	t, err := time.Parse(time.DateOnly, n.Value)
	if err != nil || (n.Tag != "!!timestamp" && n.Tag != "!!str") {
		d.fail(n, path, ErrInvalidValue, "want a date YYYY-MM-DD")
		return time.Time{}
	}
	return t
}

// timestamp decodes an RFC 3339 instant and normalises it to UTC.
func (d *decoder) timestamp(n *yaml.Node, path string) time.Time {
	if !d.kind(n, path, yaml.ScalarNode, "an RFC 3339 timestamp") {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, n.Value)
	if err != nil || (n.Tag != "!!timestamp" && n.Tag != "!!str") {
		d.fail(n, path, ErrInvalidValue, "want an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")
		return time.Time{}
	}
	return t.UTC()
}

// strings decodes a sequence of strings; a single scalar is accepted as a
// one-element list when single is true (adequacy "from: EEA").
func (d *decoder) strings(n *yaml.Node, path string, single bool) []string {
	if single && n.Kind == yaml.ScalarNode && !isNull(n) {
		return []string{d.str(n, path)}
	}
	if !d.kind(n, path, yaml.SequenceNode, "a list") {
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, e := range n.Content {
		out = append(out, d.str(e, fmt.Sprintf("%s[%d]", path, i)))
	}
	return out
}

// seq returns the items of a sequence node.
func (d *decoder) seq(n *yaml.Node, path string) []*yaml.Node {
	if isNull(n) {
		return nil
	}
	if !d.kind(n, path, yaml.SequenceNode, "a list") {
		return nil
	}
	return n.Content
}

func tagName(tag string) string {
	switch tag {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	case "!!timestamp":
		return "a timestamp"
	}
	return tag
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// yamlErrLine extracts the line from a yaml.v3 parse error ("yaml: line 3:
// ..."), or 0.
func yamlErrLine(err error) int {
	var line int
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		fmt.Sscanf(msg[i:], "line %d", &line)
	}
	return line
}

func yamlErrText(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
		msg = msg[i+2:]
	}
	return msg
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
