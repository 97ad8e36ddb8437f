package server

import (
	"encoding/hex"
	"math/rand/v2"
)

const maxRequestIDLen = 128

// saneRequestID accepts an inbound id that is safe to log, to put in a
// header and to send upstream: 1 to 128 visible ASCII characters.
func saneRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID makes 16 random bytes as 32 hex digits. It only has to be
// unique enough to find a request in the logs, not unguessable, so the
// runtime's cheap per-thread generator serves.
func newRequestID() string {
	var b [16]byte
	var out [32]byte
	for i := 0; i < 16; i += 8 {
		u := rand.Uint64()
		for j := range 8 {
			b[i+j] = byte(u >> (8 * j))
		}
	}
	hex.Encode(out[:], b[:])
	return string(out[:])
}
