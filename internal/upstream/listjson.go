package upstream

import (
	"bytes"
	"strconv"

	"github.com/composio-guard/composio-guard/internal/jsonread"
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
// than jsonread.MaxDepth is refused.

// listParser reads one list answer with the one JSON reader.
type listParser struct {
	jsonread.Reader
	withToolkit bool // read toolkit.slug (a query by toolkit compares it; others would only pay for its copy)
}

// parseListPage parses a whole list answer, appending its items to items
// (toolkit.slug only withToolkit)
// (a member that is null or absent stays "", a null item is an empty one;
// completeness is the caller's check). hasItems is false when "items" is
// absent or null.
//
// total is total_items, the count Composio reports for the whole query, or
// -1 when it is absent or not a whole number.
func parseListPage(b []byte, items []Account, known []string, withToolkit bool) (_ []Account, hasItems bool, next string, total int64, err error) {
	total = -1
	p := listParser{Reader: jsonread.New(b, 0), withToolkit: withToolkit}
	p.Known = known
	err = p.Object(func(key []byte, esc bool) error {
		switch {
		case jsonread.KeyIs(key, esc, "items"): // a repeated member replaces the earlier one
			items = items[:0]
			isNull, err := p.Null()
			if hasItems = !isNull; err != nil || isNull {
				return err
			}
			return p.Array(func() error {
				var it Account
				if err := p.item(&it); err != nil {
					return err
				}
				items = append(items, it)
				return nil
			})
		case jsonread.KeyIs(key, esc, "next_cursor"):
			next = ""
			if isNull, err := p.Null(); err != nil || isNull {
				return err
			}
			next, err = p.Str()
			return err
		case jsonread.KeyIs(key, esc, "total_items"):
			start := p.Pos()
			if err := p.Skip(); err != nil {
				return err
			}
			total = -1
			if n, err := strconv.ParseInt(string(bytes.TrimSpace(p.Bytes()[start:p.Pos()])), 10, 64); err == nil && n >= 0 {
				total = n
			}
			return nil
		}
		return p.Skip()
	})
	if err == nil {
		err = p.End() // data after the value
	}
	if err != nil {
		return nil, false, "", -1, err
	}
	return items, hasItems, next, total, nil
}

func (p *listParser) item(it *Account) error {
	if isNull, err := p.Null(); err != nil || isNull {
		return err
	}
	return p.Object(func(key []byte, esc bool) error {
		var dst *string
		switch {
		case jsonread.KeyIs(key, esc, "id"):
			dst = &it.ID
		case jsonread.KeyIs(key, esc, "status"):
			dst = &it.Status
		case jsonread.KeyIs(key, esc, "user_id"):
			dst = &it.UserID
		case jsonread.KeyIs(key, esc, "created_at"):
			var err error
			it.CreatedAt, err = p.Time()
			return err
		case p.withToolkit && jsonread.KeyIs(key, esc, "toolkit"):
			it.Toolkit = ""
			if isNull, err := p.Null(); err != nil || isNull {
				return err
			}
			return p.Object(func(key []byte, esc bool) error {
				if jsonread.KeyIs(key, esc, "slug") {
					var err error
					it.Toolkit, err = p.OptStr()
					return err
				}
				return p.Skip()
			})
		case jsonread.KeyIs(key, esc, "auth_config"):
			it.AuthConfigID = ""
			if isNull, err := p.Null(); err != nil || isNull {
				return err
			}
			return p.Object(func(key []byte, esc bool) error {
				if jsonread.KeyIs(key, esc, "id") {
					var err error
					it.AuthConfigID, err = p.OptStr()
					return err
				}
				return p.Skip()
			})
		default:
			return p.Skip()
		}
		var err error
		*dst, err = p.OptStr()
		return err
	})
}
