// Package harness is Clearance's load harness: it measures the broker
// against a bare JetStream (or HTTP) forwarder in the same run, on real
// NATS with JetStream, a real Vault dev server, Postgres and real sinks (a
// JetStream stream on a second NATS server through the natsregion
// connector, and an HTTPS partner through the webhook connector).
//
// Run starts everything, publishes a mix of allowed, minimised and refused
// requests over examples/registry, measures throughput (requests published as
// fast as the stream takes them while the consumers run), latency percentiles at fractions of the
// measured maximum rate (paced publishing), Vault round trips, audit
// entries per second, CPU time and peak memory, for the baseline and for 1
// and 2 broker instances, and returns a Report that writes itself as JSON,
// a text table and an SVG plot. The program integration/loadharness is its
// command line; BENCHMARKS.md holds the method and the figures.
//
// Every measured instance (broker or baseline) runs in a child process of
// its own: the harness's binary re-executed, which MaybeChild turns into
// the instance. CPU time and peak memory are reported per instance beside
// the harness process's own; Config.InProcess keeps them all in the
// harness's process (process totals only). The propagation measurement runs
// its instances in-process.
package harness
