package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
)

// ErrUnknownKind is returned by Registry methods for a kind that was never
// registered; it is a configuration error.
var ErrUnknownKind = errors.New("unknown connector kind")

// Config is the typed configuration of one connector kind. Validate reports
// every problem at once (errors.Join), each naming its key.
type Config interface {
	Validate() error
}

// Deps carries what connectors take from the process that builds them. The
// zero value is usable: a nil Logger discards.
type Deps struct {
	// Logger receives structured logs; connectors add a component attribute
	// and never log payloads or personal identifiers.
	Logger *slog.Logger
}

// Log returns d.Logger, or a logger that discards when it is nil.
func (d Deps) Log() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// Kind describes one kind of connector: its name as written in the broker
// config, a fresh config value to decode into, and the constructor. Build
// Kinds with NewKind so that the config type is checked once, there.
type Kind struct {
	// Name is the kind as written in configuration ("webhook").
	Name string
	// NewConfig returns a pointer to a new config value holding defaults.
	NewConfig func() Config
	// Build constructs a connector called name from a validated config.
	Build func(ctx context.Context, name string, cfg Config, deps Deps) (Connector, error)
}

// NewKind returns a Kind whose config is the pointer type C. defaults returns
// a new C holding the kind's defaults; build receives the decoded and
// validated config.
func NewKind[C Config](name string, defaults func() C, build func(ctx context.Context, name string, cfg C, deps Deps) (Connector, error)) Kind {
	return Kind{
		Name:      name,
		NewConfig: func() Config { return defaults() },
		Build: func(ctx context.Context, connName string, cfg Config, deps Deps) (Connector, error) {
			c, ok := cfg.(C)
			if !ok {
				return nil, fmt.Errorf("connectors: %s: config of type %T, want %T", connName, cfg, *new(C))
			}
			return build(ctx, connName, c, deps)
		},
	}
}

// Registry is an explicit set of connector kinds. main builds one from the
// kinds of the sub-packages (webhook.Kind(), natsregion.Kind()) and passes it
// down; tests build their own. A Registry is read-only after construction and
// safe for concurrent use.
type Registry struct {
	kinds map[string]Kind
}

// NewRegistry returns a registry of kinds. An empty or duplicate name, or a
// Kind without NewConfig or Build, is an error.
func NewRegistry(kinds ...Kind) (*Registry, error) {
	r := &Registry{kinds: make(map[string]Kind, len(kinds))}
	var errs []error
	for _, k := range kinds {
		switch {
		case k.Name == "":
			errs = append(errs, errors.New("connectors: registry: kind without a name"))
		case k.NewConfig == nil || k.Build == nil:
			errs = append(errs, fmt.Errorf("connectors: registry: kind %q lacks a config or constructor", k.Name))
		case r.has(k.Name):
			errs = append(errs, fmt.Errorf("connectors: registry: kind %q registered twice", k.Name))
		default:
			r.kinds[k.Name] = k
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Registry) has(name string) bool {
	_, ok := r.kinds[name]
	return ok
}

// Kinds returns the registered kind names, sorted.
func (r *Registry) Kinds() []string {
	names := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the Kind registered under name.
func (r *Registry) Lookup(name string) (Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Decode decodes raw strictly into a new config of kind (unknown keys are
// errors) and validates it. Use it to lint a configuration without
// connecting anywhere.
func (r *Registry) Decode(kind string, raw Raw) (Config, error) {
	k, ok := r.kinds[kind]
	if !ok {
		return nil, fmt.Errorf("connectors: kind %q (have %v): %w", kind, r.Kinds(), ErrUnknownKind)
	}
	cfg := k.NewConfig()
	if raw != nil {
		if err := raw.DecodeStrict(cfg); err != nil {
			return nil, fmt.Errorf("connectors: %s config: %w", kind, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("connectors: %s config: %w", kind, err)
	}
	return cfg, nil
}

// New decodes and validates raw as a config of kind and builds the connector
// called name (the name parties refer to in the registry).
func (r *Registry) New(ctx context.Context, name, kind string, raw Raw, deps Deps) (Connector, error) {
	cfg, err := r.Decode(kind, raw)
	if err != nil {
		return nil, fmt.Errorf("connectors: %s: %w", name, err)
	}
	k := r.kinds[kind]
	c, err := k.Build(ctx, name, cfg, deps)
	if err != nil {
		return nil, fmt.Errorf("connectors: %s: %w", name, err)
	}
	return c, nil
}
