// Package docs checks the documentation's own links: every relative link of
// README.md and docs/*.md names a file of the repository, and every #anchor
// a heading of the page it points to (as GitHub makes anchors of headings).
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

var (
	linkRe    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRe = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
	fenceRe   = regexp.MustCompile("(?ms)^```.*?^```")
)

func TestLinksResolve(t *testing.T) {
	root := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(root, "README.md"))
	checked := 0
	for _, page := range pages {
		text := read(t, page)
		for _, m := range linkRe.FindAllStringSubmatch(fenceRe.ReplaceAllString(text, ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			file, anchor, _ := strings.Cut(target, "#")
			dest := page
			if file != "" {
				dest = filepath.Join(filepath.Dir(page), filepath.FromSlash(file))
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %q: no such file", rel(root, page), target)
					continue
				}
			}
			if anchor != "" && !hasAnchor(read(t, dest), anchor) {
				t.Errorf("%s: link %q: %s has no heading with that anchor", rel(root, page), target, rel(root, dest))
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d relative links found: the pattern lost them", checked)
	}
}

// hasAnchor reports whether a heading of the markdown text gets the anchor,
// as GitHub makes them: lower case, punctuation dropped, spaces to dashes.
func hasAnchor(text, anchor string) bool {
	for _, m := range headingRe.FindAllStringSubmatch(fenceRe.ReplaceAllString(text, ""), -1) {
		if slug(m[1]) == anchor {
			return true
		}
	}
	return false
}

func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func rel(root, p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return r
}
