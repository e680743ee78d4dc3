package brokertest

import (
	"io"
	"net/http"
)

type nopCloser struct{ io.Reader }

func (nopCloser) Close() error { return nil }

func readAll(r *http.Request) ([]byte, error) {
	defer r.Body.Close()
	return io.ReadAll(io.LimitReader(r.Body, 16<<20))
}
