package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "CLEARANCE_"

// FieldError is one configuration problem at one path
// ("nats.max_deliver", "connectors.partner.config.url").
type FieldError struct {
	// Path is the dotted key path.
	Path string
	// Line is the line in the file, 0 when unknown or not from the file.
	Line int
	// Msg says what is wrong; it never holds a secret.
	Msg string
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

func fieldErr(path, msg string) error { return &FieldError{Path: path, Msg: msg} }

// Load reads the file at path, applies environment overrides from the
// process environment and returns the configuration. It does not validate;
// call Validate.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(b, os.LookupEnv)
	if err != nil {
		// Each problem is named with the file, and they stay joined, so that
		// a caller listing them (agreements.Problems) lists every one.
		problems := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			problems = j.Unwrap()
		}
		named := make([]error, len(problems))
		for i, p := range problems {
			named[i] = fmt.Errorf("%s: %w", path, p)
		}
		return nil, errors.Join(named...)
	}
	return cfg, nil
}

// Parse decodes YAML over Defaults, strictly (every unknown key is reported
// with its path and line, all at once; a file of more than one document is
// refused), then applies overrides from lookup (os.LookupEnv in production;
// nil for none).
func Parse(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	cfg := Defaults()
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	// The keys of a second document ("---") would be ignored: a file that
	// holds one is refused. An empty one, as a trailing "---" makes, holds
	// nothing to ignore.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("yaml: %w", err)
		}
		if len(next.Content) > 0 && next.Content[0].Tag != "!!null" {
			return nil, &FieldError{Path: "(root)", Line: next.Line,
				Msg: "a second YAML document (after ---): the configuration is one document, and a second one's keys would be ignored"}
		}
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		if errs := checkKeys(root.Content[0], reflect.TypeOf(cfg).Elem(), ""); len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		if err := root.Content[0].Decode(cfg); err != nil {
			return nil, err
		}
	}
	if lookup != nil {
		if err := applyEnv(reflect.ValueOf(cfg).Elem(), "", lookup); err != nil {
			return nil, err
		}
	}
	if cfg.InboundRegion != nil && cfg.InboundRegion.Consumer == "" {
		cfg.InboundRegion.Consumer = "clearance-inbound"
	}
	return cfg, nil
}

var nodeType = reflect.TypeOf(yaml.Node{})

// checkKeys walks node against t and reports every mapping key that has no
// field, with its dotted path and line.
func checkKeys(node *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	if t == nodeType {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			if node.Tag == "!!null" {
				return nil
			}
			return []error{&FieldError{Path: orRoot(path), Line: node.Line, Msg: "want a mapping"}}
		}
		fields := yamlFields(t)
		var errs []error
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			p := join(path, k.Value)
			f, ok := fields[k.Value]
			if !ok {
				errs = append(errs, &FieldError{Path: p, Line: k.Line, Msg: "unknown key"})
				continue
			}
			errs = append(errs, checkKeys(v, f.Type, p)...)
		}
		return errs
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			return nil
		}
		var errs []error
		for i := 0; i+1 < len(node.Content); i += 2 {
			errs = append(errs, checkKeys(node.Content[i+1], t.Elem(), join(path, node.Content[i].Value))...)
		}
		return errs
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			return nil
		}
		var errs []error
		for i, c := range node.Content {
			errs = append(errs, checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	}
	return nil
}

// CheckKeys reports every key of node that the struct pointed to by v does
// not declare, with paths starting at prefix. Connector configs use it to
// report unknown keys with their full path.
func CheckKeys(node *yaml.Node, v any, prefix string) error {
	return errors.Join(checkKeys(node, reflect.TypeOf(v), prefix)...)
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		m[yamlName(f)] = f
	}
	return m
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

var durationType = reflect.TypeOf(time.Duration(0))

// EnvName returns the environment variable that overrides the key at the
// dotted path ("nats.max_deliver" -> "CLEARANCE_NATS_MAX_DELIVER").
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// applyEnv sets every scalar field whose variable is present. Maps (the
// connectors) are not overridable; nil struct pointers are allocated only
// when one of their fields is overridden.
func applyEnv(v reflect.Value, path string, lookup func(string) (string, bool)) error {
	t := v.Type()
	var errs []error
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Type == nodeType {
			continue
		}
		p := join(path, yamlName(f))
		fv := v.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct:
			errs = append(errs, applyEnv(fv, p, lookup))
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
			tmp := reflect.New(f.Type.Elem())
			if !fv.IsNil() {
				tmp = fv
			}
			if anyEnv(f.Type.Elem(), p, lookup) {
				errs = append(errs, applyEnv(tmp.Elem(), p, lookup))
				fv.Set(tmp)
			}
		default:
			s, ok := lookup(EnvName(p))
			if !ok {
				continue
			}
			if err := setScalar(fv, s); err != nil {
				errs = append(errs, fieldErr(p, fmt.Sprintf("from %s: %v", EnvName(p), err)))
			}
		}
	}
	return errors.Join(errs...)
}

func anyEnv(t reflect.Type, path string, lookup func(string) (string, bool)) bool {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Type == nodeType {
			continue
		}
		p := join(path, yamlName(f))
		if f.Type.Kind() == reflect.Struct {
			if anyEnv(f.Type, p, lookup) {
				return true
			}
			continue
		}
		if _, ok := lookup(EnvName(p)); ok {
			return true
		}
	}
	return false
}

func setScalar(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case v.Kind() == reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetUint(n)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("type %s cannot be set from the environment", v.Type())
	}
	return nil
}
