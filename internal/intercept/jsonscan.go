package intercept

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/composio-guard/composio-guard/internal/jsonread"
)

// The guard reads a handful of members from bodies that are otherwise passed
// on byte for byte, so instead of decoding into maps it walks the object once
// with the one JSON reader (internal/jsonread) and records where each member
// sits. The reader validates as it goes, and bounds every index, so that no
// input can make it panic.

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
	r         jsonread.Reader
	lastComma int
	started   bool // a member was read: a comma or the closing brace comes next
	done      bool
}

// newObjIter starts at b[start], which must be '{' (leading whitespace skipped).
func newObjIter(b []byte, start int) (objIter, bool) {
	r := jsonread.New(b, start)
	if r.Expect('{') != nil {
		return objIter{}, false
	}
	return objIter{r: r, lastComma: -1}, true
}

// next returns the next member; ok is false at the closing brace.
func (it *objIter) next() (m member, ok bool, err error) {
	if it.done {
		return member{}, false, nil
	}
	r := &it.r
	c, ok := r.Peek()
	switch {
	case !ok:
		return member{}, false, errScan
	case c == '}':
		r.Expect('}')
		it.done = true
		return member{}, false, nil
	case it.started && c != ',':
		return member{}, false, errScan
	case it.started:
		it.lastComma = r.Pos()
		r.Expect(',')
		r.WS()
	}
	m.keyStart = r.Pos()
	m.prevComma = it.lastComma
	if m.key, m.keyEsc, err = r.RawStr(); err != nil {
		return member{}, false, err
	}
	if err = r.Expect(':'); err != nil {
		return member{}, false, err
	}
	r.WS()
	m.valStart = r.Pos()
	if err = r.Skip(); err != nil {
		return member{}, false, err
	}
	m.valEnd = r.Pos()
	m.nextComma = -1
	if c, ok := r.Peek(); ok && c == ',' {
		m.nextComma = r.Pos()
	}
	it.started = true
	return m, true, nil
}

// validJSON reports whether b is one JSON document, read by the one reader.
func validJSON(b []byte) bool {
	r := jsonread.New(b, 0)
	return r.Skip() == nil && r.End() == nil
}

// firstByte is the offset of the first byte of b that is not white space.
func firstByte(b []byte) int {
	r := jsonread.New(b, 0)
	r.WS()
	return r.Pos()
}

// keyIs reports whether the member's key, unescaped, equals name exactly
// (exact) or only when case is folded (folded). A case-folded match counts
// as the same member: some parsers (Go's encoding/json among them) match
// member names without regard to case.
func keyIs(b []byte, m member, name string) (exact, folded bool) {
	k := m.key
	if m.keyEsc {
		s, err := jsonread.Unquote(b[m.keyStart : m.keyStart+len(k)+2])
		if err != nil {
			return false, false
		}
		return s == name, s != name && strings.EqualFold(s, name)
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
	s, err := jsonread.Unquote(v)
	return s, err == nil
}

// validText reports whether s is what the client meant: valid UTF-8 and no
// replacement character (a lone surrogate escape decodes to one, and other
// parsers keep such strings differently).
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, utf8.RuneError)
}
