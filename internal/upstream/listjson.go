package upstream

import (
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"
)

// The list answer is read on every guarded request, so it is parsed by hand:
// one pass that validates the whole document as JSON (RFC 8259, as
// encoding/json does) and keeps only what the guard reads. What it keeps and
// when it fails is checked against encoding/json by FuzzListParserMatches.
//
// It is stricter than encoding/json in three ways, each of which makes the
// lookup fail (and the guard apply its failure mode) rather than guess:
// member names match exactly, not case-folded; the strings it keeps must be
// valid UTF-8 (encoding/json would replace bad bytes); and nesting deeper
// than maxDepth is refused.

// maxDepth bounds the nesting of a list answer (Composio's is 3 or 4 deep).
const maxDepth = 256

var errSyntax = errors.New("not valid JSON")

// listParser walks one document; pos is the next byte to read.
type listParser struct {
	b     []byte
	pos   int
	depth int
	known []string // str returns these instead of copies
}

// parseListPage parses a whole list answer, appending its items to items
// (a member that is null or absent stays "", a null item is an empty one;
// completeness is the caller's check). hasItems is false when "items" is
// absent or null.
func parseListPage(b []byte, items []Account, known []string) (_ []Account, hasItems bool, next string, err error) {
	p := listParser{b: b, known: known}
	err = p.object(func(key []byte, esc bool) error {
		switch {
		case keyIs(key, esc, "items"): // a repeated member replaces the earlier one
			items = items[:0]
			isNull, err := p.null()
			if hasItems = !isNull; err != nil || isNull {
				return err
			}
			return p.array(func() error {
				var it Account
				if err := p.item(&it); err != nil {
					return err
				}
				items = append(items, it)
				return nil
			})
		case keyIs(key, esc, "next_cursor"):
			next = ""
			if isNull, err := p.null(); err != nil || isNull {
				return err
			}
			next, err = p.str()
			return err
		}
		return p.skip()
	})
	if err == nil {
		p.ws()
		if p.pos != len(p.b) {
			err = errSyntax // data after the value
		}
	}
	if err != nil {
		return nil, false, "", err
	}
	return items, hasItems, next, nil
}

func (p *listParser) item(it *Account) error {
	if isNull, err := p.null(); err != nil || isNull {
		return err
	}
	return p.object(func(key []byte, esc bool) error {
		var dst *string
		switch {
		case keyIs(key, esc, "id"):
			dst = &it.ID
		case keyIs(key, esc, "status"):
			dst = &it.Status
		case keyIs(key, esc, "user_id"):
			dst = &it.UserID
		case keyIs(key, esc, "created_at"):
			return p.timeValue(&it.CreatedAt)
		case keyIs(key, esc, "auth_config"):
			it.AuthConfigID = ""
			if isNull, err := p.null(); err != nil || isNull {
				return err
			}
			return p.object(func(key []byte, esc bool) error {
				if keyIs(key, esc, "id") {
					return p.optStr(&it.AuthConfigID)
				}
				return p.skip()
			})
		default:
			return p.skip()
		}
		return p.optStr(dst)
	})
}

// timeValue reads a value into dst as encoding/json reads a time.Time
// member (Time.UnmarshalJSON): a string Go reads as RFC 3339 (it lets a few
// near misses through, such as a one-digit hour), its bytes as they stand
// (escapes are not decoded). Anything else, null included, is the zero time
// and no error: created_at only informs. The time is read from the bytes
// the parser already holds, in UTC, without allocating ("…Z" as Composio
// writes it, or a whole-hour offset); an odd offset costs one allocation for
// its zone, and an unreadable string a few for the error it is.
func (p *listParser) timeValue(dst *time.Time) error {
	*dst = time.Time{}
	p.ws()
	if p.pos >= len(p.b) || p.b[p.pos] != '"' {
		return p.skip()
	}
	raw, _, err := p.rawStr()
	if err != nil {
		return err
	}
	var t time.Time
	if t.UnmarshalText(raw) == nil {
		*dst = t.UTC()
	}
	return nil
}

// optStr reads a string or null ("") into dst; any other value is an error.
func (p *listParser) optStr(dst *string) error {
	*dst = ""
	if isNull, err := p.null(); err != nil || isNull {
		return err
	}
	s, err := p.str()
	*dst = s
	return err
}

func (p *listParser) ws() {
	for p.pos < len(p.b) {
		switch p.b[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// null consumes a null literal if one comes next.
func (p *listParser) null() (bool, error) {
	p.ws()
	if p.pos < len(p.b) && p.b[p.pos] == 'n' {
		return true, p.literal("null")
	}
	return false, nil
}

func (p *listParser) literal(lit string) error {
	if len(p.b)-p.pos < len(lit) || string(p.b[p.pos:p.pos+len(lit)]) != lit {
		return errSyntax
	}
	p.pos += len(lit)
	return nil
}

func (p *listParser) enter() error {
	if p.depth++; p.depth > maxDepth {
		return errors.New("nested too deep")
	}
	return nil
}

// object reads an object, calling member for each member with the parser
// at the start of its value; member must consume the value.
func (p *listParser) object(member func(key []byte, esc bool) error) error {
	return p.seq('{', '}', func() error {
		p.ws()
		key, esc, err := p.rawStr()
		if err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.b) || p.b[p.pos] != ':' {
			return errSyntax
		}
		p.pos++
		return member(key, esc)
	})
}

// array reads an array, calling elem with the parser at each element.
func (p *listParser) array(elem func() error) error {
	return p.seq('[', ']', elem)
}

// seq reads what open and end enclose ('{' '}' or '[' ']'): nothing, or
// elements split by commas. each is called at every element and must
// consume it.
func (p *listParser) seq(open, end byte, each func() error) error {
	p.ws()
	if p.pos >= len(p.b) || p.b[p.pos] != open {
		return errSyntax
	}
	if err := p.enter(); err != nil {
		return err
	}
	p.pos++
	p.ws()
	if p.pos < len(p.b) && p.b[p.pos] == end {
		p.pos++
		p.depth--
		return nil
	}
	for {
		if err := each(); err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.b) {
			return errSyntax
		}
		switch p.b[p.pos] {
		case ',':
			p.pos++
		case end:
			p.pos++
			p.depth--
			return nil
		default:
			return errSyntax
		}
	}
}

// skip validates and passes over one value of any kind.
func (p *listParser) skip() error {
	p.ws()
	if p.pos >= len(p.b) {
		return errSyntax
	}
	switch c := p.b[p.pos]; {
	case c == '{':
		return p.object(func([]byte, bool) error { return p.skip() })
	case c == '[':
		return p.array(p.skip)
	case c == '"':
		_, _, err := p.rawStr()
		return err
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return errSyntax
}

// number passes over -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *listParser) number() error {
	b := p.b
	if p.pos < len(b) && b[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(b) && b[p.pos] == '0':
		p.pos++
	case p.pos < len(b) && b[p.pos] >= '1' && b[p.pos] <= '9':
		p.digits()
	default:
		return errSyntax
	}
	if p.pos < len(b) && b[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return errSyntax
		}
	}
	if p.pos < len(b) && (b[p.pos] == 'e' || b[p.pos] == 'E') {
		p.pos++
		if p.pos < len(b) && (b[p.pos] == '+' || b[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return errSyntax
		}
	}
	return nil
}

func (p *listParser) digits() int {
	start := p.pos
	for p.pos < len(p.b) && p.b[p.pos] >= '0' && p.b[p.pos] <= '9' {
		p.pos++
	}
	return p.pos - start
}

// rawStr validates the string at pos and returns its bytes between the
// quotes, still escaped when esc.
func (p *listParser) rawStr() (raw []byte, esc bool, err error) {
	b := p.b
	if p.pos >= len(b) || b[p.pos] != '"' {
		return nil, false, errSyntax
	}
	start := p.pos + 1
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			p.pos = i + 1
			return b[start:i], esc, nil
		case c < 0x20:
			return nil, false, errSyntax
		case c == '\\':
			esc = true
			i++
			if i >= len(b) {
				return nil, false, errSyntax
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return nil, false, errSyntax
				}
				i += 4
			default:
				return nil, false, errSyntax
			}
		}
	}
	return nil, false, errSyntax
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// str reads a string value the guard keeps: decoded, and valid UTF-8.
func (p *listParser) str() (string, error) {
	start := p.pos
	raw, esc, err := p.rawStr()
	if err != nil {
		return "", err
	}
	var s string
	if !esc {
		for _, k := range p.known {
			if string(raw) == k {
				return k, nil // the caller's own string, no copy
			}
		}
		s = string(raw)
	} else if s, err = unquote(p.b[start:p.pos]); err != nil { // rare
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", errors.New("a string is not valid UTF-8")
	}
	return s, nil
}

// unquote decodes a quoted JSON string that holds escapes, by encoding/json.
// (Its own function, so that the common path does not pay for a variable
// that escapes.)
func unquote(quoted []byte) (string, error) {
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", errSyntax
	}
	return s, nil
}

// keyIs compares a raw member name with name, decoding escapes first.
func keyIs(raw []byte, esc bool, name string) bool {
	if !esc {
		return string(raw) == name
	}
	q := make([]byte, 0, len(raw)+2)
	s, err := unquote(append(append(append(q, '"'), raw...), '"'))
	return err == nil && s == name
}
