//go:build !amd64 || purego

package keys

// b64EncodeSIMD and b64DecodeSIMD have no vector version on this platform:
// b64fast.go's table loops do all the work.
func b64EncodeSIMD(dst, src []byte) int { return 0 }
func b64DecodeSIMD(dst, src []byte) int { return 0 }
