package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const dockerfilePath = "deploy/Dockerfile"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
}

// stage is a FROM and the instructions under it.
type stage struct {
	Name  string
	Image string
	Body  []instruction
}

func parseDockerfile(t *testing.T, data string) []stage {
	t.Helper()
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(data, "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var stages []stage
	for _, l := range lines {
		cmd, args, _ := strings.Cut(l, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			st := stage{Image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			continue // ARG before the first FROM
		}
		stages[len(stages)-1].Body = append(stages[len(stages)-1].Body, in)
	}
	return stages
}

// shellWords splits a RUN command the way sh would for the simple commands
// used here: quotes, ${VAR} and $VAR expansion from vars, no globbing.
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	quote := byte(0)
	expand := func(i int) int {
		j := i + 1
		var name string
		if j < len(s) && s[j] == '{' {
			end := strings.IndexByte(s[j:], '}')
			if end < 0 {
				return -1
			}
			name = s[j+1 : j+end]
			j += end + 1
		} else {
			k := j
			for k < len(s) && (s[k] == '_' || s[k] >= 'A' && s[k] <= 'Z' || s[k] >= 'a' && s[k] <= 'z' || s[k] >= '0' && s[k] <= '9') {
				k++
			}
			name = s[j:k]
			j = k
		}
		w.WriteString(vars[name])
		return j
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				w.WriteByte(c)
			}
			i++
		case c == '$':
			inWord = true
			if i = expand(i); i < 0 {
				return nil, fmt.Errorf("unterminated ${ in %q", s)
			}
		case quote == '"':
			if c == '"' {
				quote = 0
			} else {
				w.WriteByte(c)
			}
			i++
		case c == '"' || c == '\'':
			quote, inWord = c, true
			i++
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			i++
		case c == '&' || c == ';' || c == '|':
			return nil, fmt.Errorf("compound shell command %q: keep the build RUN one simple command", s)
		default:
			w.WriteByte(c)
			inWord = true
			i++
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

var envAssign = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// buildCommand returns the env assignments and the go build arguments of the
// stage's RUN that builds pkg, with ARG values from args (defaults otherwise).
func buildCommand(t *testing.T, st stage, pkg string, args map[string]string) (env, goArgs []string) {
	t.Helper()
	vars := map[string]string{}
	for _, in := range st.Body {
		switch in.Cmd {
		case "ARG":
			for _, a := range strings.Fields(in.Args) {
				name, def, _ := strings.Cut(a, "=")
				vars[name] = def
				if v, ok := args[name]; ok {
					vars[name] = v
				}
			}
		case "ENV":
			words, err := shellWords(in.Args, vars)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range words {
				if k, v, ok := strings.Cut(w, "="); ok {
					vars[k] = v
					env = append(env, w)
				}
			}
		case "RUN":
			if !strings.Contains(in.Args, "go build") || !strings.Contains(in.Args, pkg) {
				continue
			}
			words, err := shellWords(in.Args, vars)
			if err != nil {
				t.Fatal(err)
			}
			for len(words) > 0 && strings.HasPrefix(words[0], "--") { // --mount=...
				words = words[1:]
			}
			for len(words) > 0 && envAssign.MatchString(words[0]) {
				env = append(env, words[0])
				words = words[1:]
			}
			if len(words) < 2 || words[0] != "go" || words[1] != "build" {
				t.Fatalf("build RUN is not `[VAR=value ...] go build ...`: %q", in.Args)
			}
			return env, words[2:]
		}
	}
	t.Fatalf("stage %q has no RUN that builds %s", st.Name, pkg)
	return nil, nil
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, string(read(t, dockerfilePath)))
	byName := map[string]stage{}
	for _, st := range stages {
		byName[st.Name] = st
	}
	build, ok := byName["build"]
	if !ok {
		t.Fatal("no stage named build")
	}
	if !strings.HasPrefix(build.Image, "golang:1.26") {
		t.Errorf("build stage FROM %s, want golang:1.26", build.Image)
	}
	digest := regexp.MustCompile(`^gcr\.io/distroless/static-debian12:nonroot@sha256:[0-9a-f]{64}$`)
	final := stages[len(stages)-1]
	if !digest.MatchString(final.Image) {
		t.Errorf("runtime stage FROM %s, want gcr.io/distroless/static-debian12:nonroot pinned by digest", final.Image)
	}
	for _, st := range stages {
		if strings.Contains(st.Image, "distroless") && !digest.MatchString(st.Image) {
			t.Errorf("stage %s: %s is not pinned by digest", st.Name, st.Image)
		}
	}

	// An ARG ends with its stage: a RUN that uses one must declare it in
	// its own stage, or it expands to nothing (GOOS= builds for the builder).
	varRE := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	for _, st := range stages {
		declared := map[string]bool{}
		for _, in := range st.Body {
			switch in.Cmd {
			case "ARG", "ENV":
				for _, f := range strings.Fields(in.Args) {
					name, _, _ := strings.Cut(f, "=")
					declared[name] = true
				}
			case "RUN":
				for _, m := range varRE.FindAllStringSubmatch(in.Args, -1) {
					if !declared[m[1]] {
						t.Errorf("stage %s: RUN uses $%s, which the stage does not declare", st.Name, m[1])
					}
				}
			}
		}
	}

	got := map[string][]string{}
	for _, in := range final.Body {
		got[in.Cmd] = append(got[in.Cmd], in.Args)
	}
	if u := got["USER"]; len(u) == 0 || !slices.Contains([]string{"nonroot", "nonroot:nonroot", "65532", "65532:65532"}, u[len(u)-1]) {
		t.Errorf("runtime USER %v, want nonroot", u)
	}
	expose := strings.Fields(strings.Join(got["EXPOSE"], " "))
	for _, p := range []string{"8080", "9090"} {
		if !slices.Contains(expose, p) {
			t.Errorf("runtime EXPOSE %v lacks %s", expose, p)
		}
	}
	var hc []string
	if h := got["HEALTHCHECK"]; len(h) == 1 {
		_, execForm, _ := strings.Cut(h[0], "CMD ")
		if err := json.Unmarshal([]byte(execForm), &hc); err != nil {
			t.Errorf("HEALTHCHECK %q is not in exec form: %v", h[0], err)
		}
	}
	if !slices.Equal(hc, []string{"/composio-guard", "healthcheck"}) {
		t.Errorf("HEALTHCHECK runs %v, want [/composio-guard healthcheck]", hc)
	}
	var entry []string
	if e := got["ENTRYPOINT"]; len(e) == 1 {
		_ = json.Unmarshal([]byte(e[0]), &entry)
	}
	if !slices.Equal(entry, []string{"/composio-guard"}) {
		t.Errorf("ENTRYPOINT %v, want [/composio-guard]", entry)
	}
	if !slices.ContainsFunc(got["COPY"], func(s string) bool {
		return strings.HasPrefix(s, "--from=build ") && strings.HasSuffix(s, " /composio-guard")
	}) {
		t.Errorf("runtime stage does not copy /composio-guard from the build stage: %v", got["COPY"])
	}
}

// TestDockerfileBuild builds ./cmd/proxy with the build stage's own command
// (env, flags, ldflags read from the Dockerfile) and checks the result: a
// static, trimmed binary that reports the stamped version.
func TestDockerfileBuild(t *testing.T) {
	stages := parseDockerfile(t, string(read(t, dockerfilePath)))
	var build stage
	for _, st := range stages {
		if st.Name == "build" {
			build = st
		}
	}
	const version, revision = "v9.8.7-test", "0123456789abcdef"
	env, args := buildCommand(t, build, "./cmd/proxy", map[string]string{
		"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH, "VERSION": version, "REVISION": revision,
	})
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("build env %v lacks CGO_ENABLED=0", env)
	}
	if !slices.Contains(args, "-trimpath") {
		t.Errorf("go build %v lacks -trimpath", args)
	}
	bin := filepath.Join(t.TempDir(), "composio-guard")
	for i, a := range args {
		if a == "-o" && i+1 < len(args) {
			if args[i+1] != "/out/composio-guard" {
				t.Errorf("build writes %s; the runtime stage copies /out/composio-guard", args[i+1])
			}
			args[i+1] = bin
		}
	}
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = root(t)
	// The image builds with the golang image's environment: no GOFLAGS.
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "GOFLAGS=") }), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -version: %v\n%s", bin, err, out)
	}
	if want := "composio-guard " + version + " (" + revision + ")"; strings.TrimSpace(string(out)) != want {
		t.Errorf("-version printed %q, want %q", out, want)
	}

	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	// (Go leaves -ldflags out of the build info under -trimpath; -version
	// above shows they were applied.)
	for _, want := range []string{"build\tCGO_ENABLED=0", "build\t-trimpath=true"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("build info lacks %q:\n%s", want, info)
		}
	}
	if strings.Contains(string(info), root(t)) {
		t.Errorf("build info names the local path %s: -trimpath missing?", root(t))
	}
}

func TestShellWords(t *testing.T) {
	vars := map[string]string{"V": "1.0", "E": ""}
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: `A=1 go build -ldflags="-s -X main.v=${V}" -o /out/x ./cmd/x`, want: []string{"A=1", "go", "build", "-ldflags=-s -X main.v=1.0", "-o", "/out/x", "./cmd/x"}},
		{in: `GOOS=$E go 'a b' "$V"`, want: []string{"GOOS=", "go", "a b", "1.0"}},
		{in: `go build && rm -rf /`, err: true},
		{in: `go "unterminated`, err: true},
	} {
		got, err := shellWords(tc.in, vars)
		if (err != nil) != tc.err || !tc.err && !slices.Equal(got, tc.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
