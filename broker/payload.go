package broker

import (
	"encoding/json"

	"github.com/clearance-broker/clearance/agreements"
)

// Payload is what a recipient receives, sealed: signed and encrypted to a
// webhook party's public key (JWS in JWE), or sealed as an envelope for a
// regional data centre.
type Payload struct {
	// RequestID is the producer's request id.
	RequestID string `json:"request_id"`
	// Source is the producing system.
	Source string `json:"source"`
	// Recipient is the receiving party's id.
	Recipient string `json:"recipient"`
	// Purpose is the purpose of the transfer.
	Purpose string `json:"purpose"`
	// Dataset names the record's dataset.
	Dataset string `json:"dataset"`
	// Agreement is the agreement (id and version) the transfer rests on;
	// nil when it rests on a legal order.
	Agreement *agreements.AgreementRef `json:"agreement"`
	// LegalOrder names the legal order the transfer answers, if any.
	LegalOrder string `json:"legal_order,omitempty"`
	// Mechanism is the Chapter V transfer mechanism.
	Mechanism string `json:"mechanism"`
	// RetentionDays is how long the recipient may keep the record (0: not
	// recorded).
	RetentionDays int `json:"retention_days,omitempty"`
	// Record is the minimised record.
	Record map[string]any `json:"record"`
}

func newPayload(req *agreements.Request, d *agreements.Decision) ([]byte, error) {
	return json.Marshal(Payload{
		RequestID:     req.ID,
		Source:        req.Source,
		Recipient:     req.Recipient,
		Purpose:       req.Purpose,
		Dataset:       req.Dataset,
		Agreement:     d.Agreement,
		LegalOrder:    d.LegalOrder,
		Mechanism:     d.Mechanism,
		RetentionDays: d.RetentionDays,
		Record:        d.Record,
	})
}
