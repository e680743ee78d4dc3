// Package broker is Clearance's pipeline and HTTP API. It ingests transfer
// requests from the JetStream stream CLEARANCE_TRANSFERS (subjects
// clearance.transfers.<source>) through one durable pull consumer shared by
// every instance, and for each message decides, minimises, seals, audits,
// delivers and acknowledges; it answers every request with a receipt on
// clearance.receipts.<source>, and keeps what cannot be delivered sealed on
// clearance.deadletter.<source>. A request posted over HTTP names its
// instance's reply subject (clearance.replies.<instance>, header
// Clearance-Reply), where the processing instance also sends the receipt
// for the waiting client.
//
// The broker declares the small interfaces it consumes (Decider, Parties,
// Keys, AuditLog, ConnectorSet); the agreements, keys, audit and connectors
// packages provide concrete types that satisfy them. PlanFor is the one place
// where pipeline outcomes become JetStream acknowledgements.
//
// An instance configured with an inbound region also consumes sealed
// transfers from another region, opens them with its own keys, audits their
// receipt and republishes the record on a local subject.
package broker
