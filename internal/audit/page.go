package audit

import (
	"errors"
	"strconv"

	"github.com/composio-guard/composio-guard/internal/jsonread"
)

// page is what the audit reads of one list answer besides its items.
type page struct {
	items    int    // items on the page
	next     string // next_cursor; "" when null or absent
	total    int64  // total_items
	hasTotal bool
}

var errNoItems = errors.New(`no "items" array`)

// known strings of a list answer: Str returns these, not copies.
var known = []string{StatusActive, StatusInitiated, TypePrivate, TypeShared}

// parsePage reads one list answer with the proxy's one JSON reader
// (internal/jsonread, as internal/upstream's list parser does), calling each
// for every item. An item is reused between calls: each must copy what it
// keeps (its strings are its own already). Member names match exactly; a
// document that is not valid JSON is an error.
func parsePage(b []byte, each func(*Item) error) (page, error) {
	r := jsonread.New(b, 0)
	r.Known = known
	var pg page
	var it Item
	hasItems := false
	err := r.Object(func(key []byte, esc bool) error {
		switch {
		case jsonread.KeyIs(key, esc, "items"):
			if hasItems {
				return errors.New(`"items" twice`)
			}
			isNull, err := r.Null()
			if err != nil || isNull {
				return err
			}
			hasItems = true
			return r.Array(func() error {
				it = Item{}
				if err := readItem(&r, &it); err != nil {
					return err
				}
				pg.items++
				return each(&it)
			})
		case jsonread.KeyIs(key, esc, "next_cursor"):
			pg.next = ""
			var err error
			pg.next, err = r.OptStr()
			return err
		case jsonread.KeyIs(key, esc, "total_items"):
			n, ok, err := readInt(&r)
			pg.total, pg.hasTotal = n, ok
			return err
		}
		return r.Skip()
	})
	if err == nil {
		err = r.End()
	}
	if err == nil && !hasItems {
		err = errNoItems
	}
	return pg, err
}

func readItem(r *jsonread.Reader, it *Item) error {
	if isNull, err := r.Null(); err != nil || isNull {
		return err
	}
	return r.Object(func(key []byte, esc bool) error {
		switch {
		case jsonread.KeyIs(key, esc, "id"):
			var err error
			it.ID, err = r.OptStr()
			return err
		case jsonread.KeyIs(key, esc, "status"):
			var err error
			it.Status, err = r.OptStr()
			return err
		case jsonread.KeyIs(key, esc, "user_id"):
			var err error
			it.UserID, err = r.OptStr()
			return err
		case jsonread.KeyIs(key, esc, "account_type"):
			var err error
			it.AccountType, err = r.OptStr()
			return err
		case jsonread.KeyIs(key, esc, "created_at"):
			var err error
			it.CreatedAt, err = r.Time()
			return err
		case jsonread.KeyIs(key, esc, "auth_config"):
			return member(r, "id", &it.AuthConfigID)
		case jsonread.KeyIs(key, esc, "toolkit"):
			return member(r, "slug", &it.Toolkit)
		}
		return r.Skip()
	})
}

// member reads name of an object (or null) into dst.
func member(r *jsonread.Reader, name string, dst *string) error {
	*dst = ""
	if isNull, err := r.Null(); err != nil || isNull {
		return err
	}
	return r.Object(func(key []byte, esc bool) error {
		if jsonread.KeyIs(key, esc, name) {
			var err error
			*dst, err = r.OptStr()
			return err
		}
		return r.Skip()
	})
}

// readInt reads a non-negative integer number; ok is false for null or
// another value (a fractional or huge number, a string).
func readInt(r *jsonread.Reader) (int64, bool, error) {
	c, ok := r.Peek()
	if !ok {
		return 0, false, jsonread.ErrSyntax
	}
	start := r.Pos()
	if err := r.Skip(); err != nil {
		return 0, false, err
	}
	if c < '0' || c > '9' {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(string(r.Bytes()[start:r.Pos()]), 10, 64)
	if err != nil {
		return 0, false, nil
	}
	return n, true, nil
}

// parseEnvelope returns error.message of Composio's error envelope, or ""
// (the 429 body, for one, is {"message": ...}: that message is taken too).
func parseEnvelope(b []byte) string {
	r := jsonread.New(b, 0)
	var msg string
	err := r.Object(func(key []byte, esc bool) error {
		switch {
		case jsonread.KeyIs(key, esc, "error"):
			if c, ok := r.Peek(); !ok || c != '{' {
				return r.Skip()
			}
			return r.Object(func(key []byte, esc bool) error {
				if jsonread.KeyIs(key, esc, "message") {
					if c, ok := r.Peek(); ok && c == '"' {
						var err error
						msg, err = r.OptStr()
						return err
					}
				}
				return r.Skip()
			})
		case jsonread.KeyIs(key, esc, "message") && msg == "":
			if c, ok := r.Peek(); ok && c == '"' {
				var err error
				msg, err = r.OptStr()
				return err
			}
		}
		return r.Skip()
	})
	if err != nil {
		return ""
	}
	return msg
}
