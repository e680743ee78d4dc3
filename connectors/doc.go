// Package connectors defines how Clearance hands a sealed payload to a
// recipient: the two-method Connector interface, the Delivery it carries, the
// error classes that decide what the broker does with a message, and the
// explicit Registry of connector kinds that main builds and passes down.
//
// Each delivery target lives in its own sub-package (webhook, natsregion),
// offers a Kind() for the registry, and passes the shared conformance suite
// in connectortest. main builds the registry from those kinds:
//
//	reg, err := connectors.NewRegistry(webhook.Kind(), natsregion.Kind())
//	conn, err := reg.New(ctx, "partner-webhook", "webhook", connectors.YAMLNode(node), deps)
//
// Configuration reaches a kind as Raw (YAML, a YAML node, or JSON), decoded
// strictly (unknown keys are errors) and validated with every problem
// reported at once. Gate helps implementations stop new deliveries and wait
// for those in flight on Close.
package connectors
