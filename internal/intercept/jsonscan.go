package intercept

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// The guard reads a handful of members from bodies that are otherwise passed
// on byte for byte, so instead of decoding into maps it walks the object once
// and records where each member sits. Input is checked with json.Valid first;
// the walker still bounds every index so that no input can make it panic.

var errScan = errors.New("malformed JSON object")

// member is one object member: its raw key (between the quotes) and the byte
// offsets of the member in the whole document.
type member struct {
	key       []byte
	keyEsc    bool // the key holds escapes and must be decoded before comparing
	keyStart  int  // opening quote of the key
	valStart  int
	valEnd    int // just after the value
	prevComma int // the comma before this member, -1 for the first one
	nextComma int // the comma after this member, -1 for the last one
}

func (m member) value(b []byte) []byte { return b[m.valStart:m.valEnd] }

// objIter walks the members of one object without allocating.
type objIter struct {
	b         []byte
	i         int
	lastComma int
	end       int // just after the closing brace, once done
	done      bool
}

// newObjIter starts at b[start], which must be '{' (leading whitespace skipped).
func newObjIter(b []byte, start int) (objIter, bool) {
	i := skipWS(b, start)
	if i >= len(b) || b[i] != '{' {
		return objIter{}, false
	}
	return objIter{b: b, i: i + 1, lastComma: -1}, true
}

// next returns the next member; ok is false at the closing brace.
func (it *objIter) next() (m member, ok bool, err error) {
	if it.done {
		return member{}, false, nil
	}
	b := it.b
	i := skipWS(b, it.i)
	if i >= len(b) {
		return member{}, false, errScan
	}
	switch b[i] {
	case '}':
		it.done, it.end = true, i+1
		return member{}, false, nil
	case ',':
		it.lastComma = i
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return member{}, false, errScan
	}
	m.keyStart = i
	m.prevComma = it.lastComma
	ks := i + 1
	ke, esc, err := stringEnd(b, i)
	if err != nil {
		return member{}, false, err
	}
	m.key, m.keyEsc = b[ks:ke-1], esc
	i = skipWS(b, ke)
	if i >= len(b) || b[i] != ':' {
		return member{}, false, errScan
	}
	i = skipWS(b, i+1)
	m.valStart = i
	if i, err = valueEnd(b, i); err != nil {
		return member{}, false, err
	}
	m.valEnd = i
	i = skipWS(b, i)
	m.nextComma = -1
	if i < len(b) && b[i] == ',' {
		m.nextComma = i
	}
	it.i = i
	return m, true, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index just after the string starting at b[i] (a quote)
// and whether it holds escapes.
func stringEnd(b []byte, i int) (end int, esc bool, err error) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			esc = true
			i++
		case '"':
			return i + 1, esc, nil
		}
	}
	return 0, false, errScan
}

// valueEnd returns the index just after the value starting at b[i].
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errScan
	}
	switch b[i] {
	case '"':
		end, _, err := stringEnd(b, i)
		return end, err
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, _, err := stringEnd(b, i)
				if err != nil {
					return 0, err
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errScan
	default: // number, true, false, null
		start := i
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if i == start {
					return 0, errScan
				}
				return i, nil
			}
			i++
		}
		if i == start {
			return 0, errScan
		}
		return i, nil
	}
}

// keyIs reports whether the member's key, unescaped, equals name exactly
// (exact) or only when case is folded (folded). A case-folded match counts
// as the same member: some parsers (Go's encoding/json among them) match
// member names without regard to case.
func keyIs(b []byte, m member, name string) (exact, folded bool) {
	k := m.key
	if m.keyEsc {
		var s string
		if err := json.Unmarshal(b[m.keyStart:m.keyStart+len(k)+2], &s); err != nil {
			return false, false
		}
		return s == name, s != name && bytes.EqualFold([]byte(s), []byte(name))
	}
	if string(k) == name {
		return true, false
	}
	return false, bytes.EqualFold(k, []byte(name))
}

// decodeString decodes a JSON string value; ok is false when v is not a string.
func decodeString(v []byte) (s string, ok bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// validText reports whether s is what the client meant: valid UTF-8 and no
// replacement character (a lone surrogate escape decodes to one, and other
// parsers keep such strings differently).
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, utf8.RuneError)
}
