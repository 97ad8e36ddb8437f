package intercept

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzAppendCompactMatches holds the request digest's compactor to
// encoding/json: on every valid JSON input both write the same bytes, so
// white space alone never makes a repeat differ and nothing else is dropped.
func FuzzAppendCompactMatches(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(" { \"a\" : \"x \\\" y\\\\\" ,\n\t\"b\":[ 1 , 2 ] }\r\n"))
	f.Add([]byte(`"a string \" with \\ escapes "`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, b); err != nil {
			t.Fatalf("json.Compact: %v", err)
		}
		if got := appendCompact([]byte("p"), b); !bytes.Equal(got[1:], want.Bytes()) || got[0] != 'p' {
			t.Fatalf("appendCompact(%q) = %q, want %q", b, got[1:], want.Bytes())
		}
	})
}
