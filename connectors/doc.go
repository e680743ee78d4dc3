// Package connectors defines how Clearance hands a sealed payload to a
// recipient: the two-method Connector interface, the Delivery it carries, the
// error classes that decide what the broker does with a message, and the
// explicit Registry of connector kinds that main builds and passes down.
//
// Each delivery target lives in its own sub-package (webhook, natsregion) and
// passes the shared conformance suite in connectortest.
package connectors
