package broker_test

import (
	"bytes"

	"github.com/clearance-broker/clearance/broker/samplepartner"
)

func newBenchKey() ([]byte, error) {
	k, err := samplepartner.NewKey("bench")
	if err != nil {
		return nil, err
	}
	return k.PublicJWK, nil
}

// replaceID gives the example request another id.
func replaceID(body []byte, id string) string {
	return string(bytes.Replace(body, []byte(`"ord-10023-delivery"`), []byte(`"`+id+`"`), 1))
}
