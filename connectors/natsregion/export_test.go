package natsregion

// PubAck and ReadUsualPubAck let the external tests check a real server's
// answers against the hand reader.
type PubAck = pubAck

var ReadUsualPubAck = readUsualPubAck
