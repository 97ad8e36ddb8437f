// Package jsonread is the one JSON reader of the proxy: a one-pass,
// validating reader (RFC 8259, as encoding/json reads it) that walks a
// document in place, without decoding it into maps. The guard uses it to
// find the few members it reads in a client's body (and where they sit, to
// strip or insert one byte for byte), and the list client to keep the few
// members of Composio's list answer it needs, at two allocations a page.
//
// It is stricter than encoding/json in one way: nesting deeper than
// MaxDepth is refused. Its callers' differential fuzz targets hold it to
// encoding/json otherwise (FuzzListParserMatches in internal/upstream,
// FuzzParseBody and FuzzSandbox in internal/intercept).
//
// Why not encoding/json/v2's jsontext: both readers run on every guarded
// request, and this one reads members by position with no allocation and no
// copy of the document; jsontext would still need the positions kept by
// hand (it reports offsets, not spans of members and their commas), and it
// is behind GOEXPERIMENT in Go 1.26.
package jsonread

import (
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"
)

// MaxDepth bounds nesting; deeper documents are refused.
const MaxDepth = 256

// ErrSyntax is any input that is not valid JSON.
var ErrSyntax = errors.New("not valid JSON")

// ErrDepth is a document nested deeper than MaxDepth.
var ErrDepth = errors.New("nested too deep")

// Reader walks one document; its position is the next byte to read.
type Reader struct {
	b     []byte
	pos   int
	depth int
	// Known strings: Str returns these instead of copies when they match.
	Known []string
}

// New reads b from offset start.
func New(b []byte, start int) Reader { return Reader{b: b, pos: start} }

// Pos is the offset of the next byte to read.
func (r *Reader) Pos() int { return r.pos }

// Bytes is the whole document.
func (r *Reader) Bytes() []byte { return r.b }

// Peek returns the next byte after white space, and false at the end.
func (r *Reader) Peek() (byte, bool) {
	r.WS()
	if r.pos >= len(r.b) {
		return 0, false
	}
	return r.b[r.pos], true
}

// Expect consumes c, the next byte after white space.
func (r *Reader) Expect(c byte) error {
	if got, ok := r.Peek(); !ok || got != c {
		return ErrSyntax
	}
	r.pos++
	return nil
}

// WS passes over white space.
func (r *Reader) WS() {
	for r.pos < len(r.b) {
		switch r.b[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// End checks that nothing but white space follows.
func (r *Reader) End() error {
	r.WS()
	if r.pos != len(r.b) {
		return ErrSyntax
	}
	return nil
}

// Null consumes a null literal if one comes next.
func (r *Reader) Null() (bool, error) {
	if c, ok := r.Peek(); ok && c == 'n' {
		return true, r.literal("null")
	}
	return false, nil
}

func (r *Reader) literal(lit string) error {
	if len(r.b)-r.pos < len(lit) || string(r.b[r.pos:r.pos+len(lit)]) != lit {
		return ErrSyntax
	}
	r.pos += len(lit)
	return nil
}

// Object reads an object, calling member for each member with the reader
// at the start of its value (white space before it skipped); member must
// consume the value. key is the raw name between its quotes (escaped when
// esc), which starts at keyStart-1 (its opening quote is at keyStart-1).
func (r *Reader) Object(member func(key []byte, esc bool) error) error {
	return r.seq('{', '}', func() error {
		key, esc, err := r.objectKey()
		if err != nil {
			return err
		}
		return member(key, esc)
	})
}

// objectKey reads a member's name and its colon.
func (r *Reader) objectKey() (key []byte, esc bool, err error) {
	r.WS()
	if key, esc, err = r.RawStr(); err != nil {
		return nil, false, err
	}
	if err := r.Expect(':'); err != nil {
		return nil, false, err
	}
	r.WS()
	return key, esc, nil
}

// Array reads an array, calling elem with the reader at each element.
func (r *Reader) Array(elem func() error) error {
	return r.seq('[', ']', elem)
}

// seq reads what open and end enclose ('{' '}' or '[' ']'): nothing, or
// elements split by commas. each is called at every element and must
// consume it.
func (r *Reader) seq(open, end byte, each func() error) error {
	if err := r.Expect(open); err != nil {
		return err
	}
	if r.depth++; r.depth > MaxDepth {
		return ErrDepth
	}
	if c, ok := r.Peek(); ok && c == end {
		r.pos++
		r.depth--
		return nil
	}
	for {
		if err := each(); err != nil {
			return err
		}
		c, ok := r.Peek()
		if !ok {
			return ErrSyntax
		}
		switch c {
		case ',':
			r.pos++
		case end:
			r.pos++
			r.depth--
			return nil
		default:
			return ErrSyntax
		}
	}
}

// Skip validates and passes over one value of any kind.
func (r *Reader) Skip() error {
	c, ok := r.Peek()
	if !ok {
		return ErrSyntax
	}
	switch {
	case c == '{':
		return r.Object(func([]byte, bool) error { return r.Skip() })
	case c == '[':
		return r.Array(r.Skip)
	case c == '"':
		_, _, err := r.RawStr()
		return err
	case c == 't':
		return r.literal("true")
	case c == 'f':
		return r.literal("false")
	case c == 'n':
		return r.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return r.number()
	}
	return ErrSyntax
}

// number passes over -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (r *Reader) number() error {
	b := r.b
	if r.pos < len(b) && b[r.pos] == '-' {
		r.pos++
	}
	switch {
	case r.pos < len(b) && b[r.pos] == '0':
		r.pos++
	case r.pos < len(b) && b[r.pos] >= '1' && b[r.pos] <= '9':
		r.digits()
	default:
		return ErrSyntax
	}
	if r.pos < len(b) && b[r.pos] == '.' {
		r.pos++
		if r.digits() == 0 {
			return ErrSyntax
		}
	}
	if r.pos < len(b) && (b[r.pos] == 'e' || b[r.pos] == 'E') {
		r.pos++
		if r.pos < len(b) && (b[r.pos] == '+' || b[r.pos] == '-') {
			r.pos++
		}
		if r.digits() == 0 {
			return ErrSyntax
		}
	}
	return nil
}

func (r *Reader) digits() int {
	start := r.pos
	for r.pos < len(r.b) && r.b[r.pos] >= '0' && r.b[r.pos] <= '9' {
		r.pos++
	}
	return r.pos - start
}

// RawStr validates the string at the position and returns its bytes
// between the quotes, still escaped when esc.
func (r *Reader) RawStr() (raw []byte, esc bool, err error) {
	b := r.b
	if r.pos >= len(b) || b[r.pos] != '"' {
		return nil, false, ErrSyntax
	}
	start := r.pos + 1
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			r.pos = i + 1
			return b[start:i], esc, nil
		case c < 0x20:
			return nil, false, ErrSyntax
		case c == '\\':
			esc = true
			i++
			if i >= len(b) {
				return nil, false, ErrSyntax
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return nil, false, ErrSyntax
				}
				i += 4
			default:
				return nil, false, ErrSyntax
			}
		}
	}
	return nil, false, ErrSyntax
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Str reads a string value to keep: decoded, and valid UTF-8. A string
// equal to one of Known is that very string, not a copy.
func (r *Reader) Str() (string, error) {
	start := r.pos
	raw, esc, err := r.RawStr()
	if err != nil {
		return "", err
	}
	var s string
	if !esc {
		for _, k := range r.Known {
			if string(raw) == k {
				return k, nil // the caller's own string, no copy
			}
		}
		s = string(raw)
	} else if s, err = Unquote(r.b[start:r.pos]); err != nil { // rare
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", errors.New("a string is not valid UTF-8")
	}
	return s, nil
}

// Unquote decodes a quoted JSON string (with its quotes) as encoding/json
// does. (Its own function, so that the common path does not pay for a
// variable that escapes.)
func Unquote(quoted []byte) (string, error) {
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", ErrSyntax
	}
	return s, nil
}

// KeyIs compares a raw member name with name, decoding escapes first.
func KeyIs(raw []byte, esc bool, name string) bool {
	if !esc {
		return string(raw) == name
	}
	q := make([]byte, 0, len(raw)+2)
	s, err := Unquote(append(append(append(q, '"'), raw...), '"'))
	return err == nil && s == name
}

// OptStr reads a string, or null as ""; any other value is an error.
func (r *Reader) OptStr() (string, error) {
	if isNull, err := r.Null(); err != nil || isNull {
		return "", err
	}
	return r.Str()
}

// Time reads a value as encoding/json reads a time.Time member
// (Time.UnmarshalJSON): a string Go reads as RFC 3339 (it lets a few near
// misses through, such as a one-digit hour), its bytes as they stand
// (escapes are not decoded), in UTC. Anything else, null included, is the
// zero time and no error: a timestamp only informs. A "…Z" or whole-hour
// offset costs no allocation; an odd offset one for its zone.
func (r *Reader) Time() (time.Time, error) {
	if c, ok := r.Peek(); !ok || c != '"' {
		return time.Time{}, r.Skip()
	}
	raw, _, err := r.RawStr()
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if t.UnmarshalText(raw) != nil {
		return time.Time{}, nil
	}
	return t.UTC(), nil
}
