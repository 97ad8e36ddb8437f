package settings_test

import (
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/settings"
)

type sample struct {
	Wait  time.Duration `env:"WAIT" envDefault:"2s"`
	Count int           `env:"COUNT" envDefault:"3"`
	Name  string        `env:"NAME"`
}

func TestParseAndDefaults(t *testing.T) {
	if d := settings.Defaults[sample](); d != (sample{Wait: 2 * time.Second, Count: 3}) {
		t.Errorf("Defaults = %+v", d)
	}
	s, err := settings.Parse[sample](map[string]string{"GUARD_COUNT": "7", "GUARD_NAME": "x", "COUNT": "9"})
	if err != nil || s != (sample{Wait: 2 * time.Second, Count: 7, Name: "x"}) {
		t.Errorf("Parse = %+v, %v", s, err)
	}
}

func TestProblems(t *testing.T) {
	var p settings.Problems
	if p.Err() != nil {
		t.Fatal("no problem, no error")
	}
	p.Positive("WAIT", 0)
	settings.OneOf(&p, "MODE", "loud", "quiet", "off")
	var q settings.Problems
	q.Add("NAME", "bad %s", "name")
	p.Join(q.Err())
	got := p.Err().Error()
	for _, want := range []string{"GUARD_WAIT: must be a positive duration, got 0s", `GUARD_MODE: "loud" is not one of quiet|off`, "GUARD_NAME: bad name"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
}
