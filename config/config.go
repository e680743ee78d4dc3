package config

import (
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/audit/mirror"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/keys"

	"gopkg.in/yaml.v3"
)

// Config is the whole broker configuration, as read from clearance.yaml.
type Config struct {
	// NATS is the connection to the NATS cluster carrying transfer requests.
	NATS NATS `yaml:"nats"`
	// Store is the SQL database holding the audit log.
	Store Store `yaml:"store"`
	// Vault configures the production key service (Vault transit), as the
	// keys package defines it. Exactly one of Vault and DevKeyring is set.
	Vault *keys.VaultConfig `yaml:"vault"`
	// DevKeyring configures the local development key ring (not Vault).
	DevKeyring *DevKeyring `yaml:"dev_keyring"`
	// Audit configures the tamper-evident audit log.
	Audit Audit `yaml:"audit"`
	// Registry says where the agreements registry is read from.
	Registry Registry `yaml:"registry"`
	// HTTP configures the API listener.
	HTTP HTTP `yaml:"http"`
	// Connectors are the named delivery targets parties refer to.
	Connectors map[string]Connector `yaml:"connectors"`
	// InboundRegion, when set, makes this instance the receiving side of a
	// regional transfer.
	InboundRegion *InboundRegion `yaml:"inbound_region"`
	// Pipeline tunes message processing.
	Pipeline Pipeline `yaml:"pipeline"`
	// Logging configures structured logs.
	Logging Logging `yaml:"logging"`
	// LivePolicy tunes how registry changes reach every instance.
	LivePolicy LivePolicy `yaml:"live_policy"`
	// Erasure tunes the erasure notices sent to recipients.
	Erasure Erasure `yaml:"erasure"`
	// SubjectKeys tunes the cache of per-subject data keys.
	SubjectKeys SubjectKeys `yaml:"subject_keys"`
	// Auth configures the bearer tokens of the compliance API and console
	// (as the compliance package defines it). Without it they are not
	// served.
	Auth *compliance.AuthConfig `yaml:"auth"`
}

// NATS is the connection to NATS and the JetStream ingest stream.
type NATS struct {
	// URLs of the cluster's servers; the client fails over between them.
	URLs []string `yaml:"urls"`
	// CredsFile is a NATS credentials file (JWT + NKey seed).
	CredsFile string `yaml:"creds_file"`
	// NKeyFile is a file holding an NKey seed (alternative to CredsFile).
	NKeyFile string `yaml:"nkey_file"`
	// TLS configures TLS to the servers.
	TLS TLS `yaml:"tls"`
	// Stream is the ingest stream's name.
	Stream string `yaml:"stream"`
	// Replicas is the stream's replica count (1, 3 or 5 on a cluster).
	Replicas int `yaml:"replicas"`
	// Consumer is the durable pull consumer shared by every instance.
	Consumer string `yaml:"consumer"`
	// DuplicateWindow is how long Nats-Msg-Id de-duplication remembers ids.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MaxDeliver is how many times a message is tried before it is
	// dead-lettered.
	MaxDeliver int `yaml:"max_deliver"`
	// AckWait is how long a delivered message stays unacknowledged before
	// JetStream redelivers it; workers extend it while busy.
	AckWait time.Duration `yaml:"ack_wait"`
	// FetchBatch is how many messages an instance pulls ahead.
	FetchBatch int `yaml:"fetch_batch"`
}

// TLS is client-side TLS material, all by file path.
type TLS struct {
	// CAFile verifies the server certificates.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the client certificate's private key.
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether any TLS material is configured.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Store is the SQL database.
type Store struct {
	// DSN is a postgres:// URL (without a password) or a SQLite file:
	// sqlite:///path, sqlite:path or a plain path that does not read as a
	// libpq keyword DSN (see Store.validate).
	DSN string `yaml:"dsn"`
	// Password, for Postgres, is inserted into the DSN at start.
	Password SecretRef `yaml:"password"`
}

// DevKeyring configures the development key ring: keys on local disk, for
// `clearance dev` and tests only.
type DevKeyring struct {
	// Path is the key ring file; created (mode 0600) when missing.
	Path string `yaml:"path"`
}

// Audit configures the audit log.
type Audit struct {
	// HMACKey keys the hash of subject ids, by reference.
	HMACKey SecretRef `yaml:"hmac_key"`
	// CheckpointEvery signs a checkpoint after this many entries.
	CheckpointEvery int `yaml:"checkpoint_every"`
	// CheckpointInterval signs a checkpoint at least this often; it is at
	// least 1s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// Chains is the number of hash chains the audit log is written as
	// (audit.Options.Chains). 0 (the default) takes the number the database
	// records, or 1 if it records none. 2 on PostgreSQL lets two batches
	// commit in parallel; the first instance that asks for it forks the log,
	// after which instances of earlier versions can no longer append, so
	// upgrade every instance first. Every instance on one database must use
	// the same number. SQLite takes 1 only.
	Chains int `yaml:"chains"`
	// GatherWindow is how long the audit writer waits at most for a batch
	// to fill up with the entries it expects (audit.Options.GatherWindow);
	// 0 never waits.
	GatherWindow time.Duration `yaml:"gather_window"`
	// CheckpointStream is the JetStream stream, on the nats section's
	// servers, that keeps a copy of every checkpoint outside the database
	// (audit/mirror), for clearance audit verify to hold the log to. Empty
	// keeps none.
	CheckpointStream string `yaml:"checkpoint_stream"`
}

// Registry says where the agreements registry comes from.
type Registry struct {
	// Dir is a directory of registry YAML files.
	Dir string `yaml:"dir"`
}

// HTTP configures the API listener.
type HTTP struct {
	// Listen is the host:port the API listens on.
	Listen string `yaml:"listen"`
	// RequestTimeout bounds how long POST /v1/transfers waits for receipts;
	// it is at least 100ms.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxBodyBytes caps a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// Connector is one named delivery target. Parties name it in the registry.
type Connector struct {
	// Kind is a connector kind known to the connectors registry
	// ("webhook", "natsregion").
	Kind string `yaml:"kind"`
	// Config is the kind-specific configuration, decoded strictly by the
	// kind's config type (see DecodeConnectors).
	Config yaml.Node `yaml:"config"`
}

// InboundRegion makes this instance receive regional transfers.
type InboundRegion struct {
	// Stream is the JetStream stream regional transfers arrive in; it is
	// created or updated at start.
	Stream string `yaml:"stream"`
	// Subject is the subject (wildcards allowed) the stream captures and the
	// sending region's natsregion connector publishes to. It must not
	// overlap the subjects Clearance itself uses, which the stream would
	// capture.
	Subject string `yaml:"subject"`
	// Consumer is the durable pull consumer shared by this region's
	// instances.
	Consumer string `yaml:"consumer"`
	// LocalSubject is where the opened record is republished, in plaintext,
	// for the region's own systems: a subject without wildcards, outside
	// clearance.> and not matched by Subject, so that the record never lands
	// in the inbound stream or in one of Clearance's own.
	LocalSubject string `yaml:"local_subject"`
	// Recipients are the parties this region receives for (the sending
	// region's natsregion parties that this region hosts, such as
	// dc-tokyo). A copy or erasure notice for another is refused: regions
	// share one transit key, so a copy sealed for another region's
	// recipient opens here too. Empty: any recipient, with a warning at
	// start.
	Recipients []string `yaml:"recipients"`
}

// Pipeline tunes processing.
type Pipeline struct {
	// Concurrency is how many messages one instance processes at once.
	Concurrency int `yaml:"concurrency"`
	// BackoffBase is the first retry delay after a transient failure; it
	// is at least 100ms.
	BackoffBase time.Duration `yaml:"backoff_base"`
	// BackoffMax caps the retry delay, a partner's Retry-After included.
	BackoffMax time.Duration `yaml:"backoff_max"`
	// ShutdownGrace is how long shutdown waits for in-flight messages before
	// handing them back; it is at least 100ms.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// GCPercent is the Go garbage collector's percentage (GOGC) the
	// instance runs with: 400 by default, which costs memory the instance
	// has room for, saves CPU on every message and keeps the collector out
	// of the latency tail (BENCHMARKS.md, findings 59 and 64). 0 leaves
	// the Go runtime's own setting. A GOGC environment variable wins over
	// it.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitBytes is the Go runtime's soft memory limit for the
	// instance, under which its collector runs more often instead of
	// letting the heap grow. 0 (the default) takes 90 % of the memory
	// limit of the instance's cgroup (a container's limit) when it has
	// one, else none. A GOMEMLIMIT environment variable wins over it.
	MemoryLimitBytes int64 `yaml:"memory_limit_bytes"`
}

// Logging configures structured logs.
type Logging struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// Defaults returns a configuration holding every default; Load decodes the
// file over it.
func Defaults() *Config {
	return &Config{
		NATS: NATS{
			URLs:            []string{"nats://127.0.0.1:4222"},
			Stream:          "CLEARANCE_TRANSFERS",
			Replicas:        1,
			Consumer:        "clearance",
			DuplicateWindow: 2 * time.Minute,
			MaxDeliver:      10,
			AckWait:         30 * time.Second,
			FetchBatch:      64,
		},
		Audit: Audit{CheckpointEvery: 30000, CheckpointInterval: time.Minute, GatherWindow: audit.DefaultGatherWindow,
			CheckpointStream: mirror.DefaultStream},
		HTTP: HTTP{Listen: "127.0.0.1:8080", RequestTimeout: 30 * time.Second, MaxBodyBytes: 8 << 20},
		Pipeline: Pipeline{
			Concurrency:   1024,
			BackoffBase:   time.Second,
			BackoffMax:    5 * time.Minute,
			ShutdownGrace: 30 * time.Second,
			GCPercent:     400,
		},
		Logging:     Logging{Level: "info", Format: "json"},
		LivePolicy:  LivePolicy{SyncTimeout: time.Second},
		Erasure:     Erasure{EscalateAfter: 72 * time.Hour},
		SubjectKeys: SubjectKeys{CacheSize: 100000, CacheTTL: 5 * time.Minute},
	}
}

// GatherWindowOption is GatherWindow as audit.Options takes it: there 0
// means the audit log's default and a negative window never waits, where
// in the file 0 never waits.
func (a Audit) GatherWindowOption() time.Duration {
	if a.GatherWindow == 0 {
		return -1
	}
	return a.GatherWindow
}
