// Package hostile feeds Clearance malformed and hostile transfer requests
// (a corpus under testdata/corpus: invalid JSON, wrong types, missing
// fields, unknown references, injection strings in every field, deep
// nesting) plus generated ones (a 10 MB body, oversized headers, a forged
// Nats-Msg-Id, replays), over POST /v1/transfers and over a NATS publish.
// Each must be answered with a specific reason, be audited, reach no
// recipient, leak no personal value into the logs, the answers or the
// audit log (member names included), and leave the broker ready. The answers are pinned in testdata/*.golden.json (-update
// regenerates them).
package hostile
