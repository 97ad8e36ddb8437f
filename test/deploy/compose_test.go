package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const composePath = "deploy/compose.yaml"

// composeConfig runs the compose CLI's own validation and returns the
// normalised file it prints (paths absolute, short syntax expanded).
func composeConfig(t *testing.T) []byte {
	t.Helper()
	if _, err := exec.LookPath("docker-compose"); err == nil {
		run(t, "docker-compose", "-f", composePath, "config", "-q")
		return run(t, "docker-compose", "-f", composePath, "config")
	}
	// The compose plugin validates without an engine too.
	if exec.Command("docker", "compose", "version").Run() == nil {
		run(t, "docker", "compose", "-f", composePath, "config", "-q")
		return run(t, "docker", "compose", "-f", composePath, "config")
	}
	tool(t, "docker-compose") // fails with the install hint
	return nil
}

type composeFile struct {
	Services map[string]struct {
		Image string `json:"image"`
		Build *struct {
			Context    string `json:"context"`
			Dockerfile string `json:"dockerfile"`
			Target     string `json:"target"`
		} `json:"build"`
		Environment map[string]string `json:"environment"`
		Ports       []composePort     `json:"ports"`
		Volumes     []composeVolume   `json:"volumes"`
	} `json:"services"`
}

// composePort is a published port; docker-compose v1 prints the short form
// "127.0.0.1:8080:8080/tcp", the compose plugin the long one.
type composePort struct {
	HostIP string `json:"host_ip"`
	Target string `json:"target"`
}

func (p *composePort) UnmarshalJSON(b []byte) error {
	var short string
	if json.Unmarshal(b, &short) == nil {
		short, _, _ = strings.Cut(short, "/")
		parts := strings.Split(short, ":")
		p.Target = parts[len(parts)-1]
		if len(parts) == 3 {
			p.HostIP = parts[0]
		}
		return nil
	}
	var long struct {
		HostIP string `json:"host_ip"`
		Target int    `json:"target"`
	}
	if err := json.Unmarshal(b, &long); err != nil {
		return fmt.Errorf("compose port %s: %w", b, err)
	}
	p.HostIP, p.Target = long.HostIP, fmt.Sprint(long.Target)
	return nil
}

// composeVolume is a mount, short ("src:dst:ro") or long form.
type composeVolume struct {
	Type   string `json:"type"`
	Source string `json:"source"`
	Target string `json:"target"`
}

func (v *composeVolume) UnmarshalJSON(b []byte) error {
	var short string
	if json.Unmarshal(b, &short) == nil {
		parts := strings.Split(short, ":")
		if len(parts) < 2 {
			return fmt.Errorf("compose volume %q", short)
		}
		v.Source, v.Target = parts[0], parts[1]
		if strings.HasPrefix(v.Source, "/") || strings.HasPrefix(v.Source, ".") {
			v.Type = "bind"
		} else {
			v.Type = "volume"
		}
		return nil
	}
	type plain composeVolume
	if err := json.Unmarshal(b, (*plain)(v)); err != nil {
		return fmt.Errorf("compose volume %s: %w", b, err)
	}
	return nil
}

func TestCompose(t *testing.T) {
	var cf composeFile
	if err := yaml.Unmarshal(composeConfig(t), &cf); err != nil {
		t.Fatalf("parse the normalised compose file: %v", err)
	}
	for _, name := range []string{"fakecomposio", "proxy", "prometheus", "grafana"} {
		if _, ok := cf.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}

	// Both built services use a stage of deploy/Dockerfile that exists.
	stages := map[string]bool{}
	for _, st := range parseDockerfile(t, string(read(t, dockerfilePath))) {
		stages[st.Name] = true
	}
	for _, name := range []string{"fakecomposio", "proxy"} {
		b := cf.Services[name].Build
		if b == nil || !stages[b.Target] || filepath.Join(b.Context, b.Dockerfile) != filepath.Join(root(t), dockerfilePath) {
			t.Errorf("service %s does not build a stage of %s: %+v", name, dockerfilePath, b)
		}
	}

	proxy := cf.Services["proxy"]
	if up := proxy.Environment["GUARD_UPSTREAM_URL"]; !strings.HasPrefix(up, "http://fakecomposio:") {
		t.Errorf("proxy GUARD_UPSTREAM_URL %q, want the fakecomposio service", up)
	}
	if _, p, _ := net.SplitHostPort(proxy.Environment["GUARD_ADMIN_ADDR"]); p != "9090" {
		t.Errorf("proxy GUARD_ADMIN_ADDR %q, want port 9090 (prometheus.yml scrapes proxy:9090)", proxy.Environment["GUARD_ADMIN_ADDR"])
	}
	for name, s := range cf.Services {
		for _, p := range s.Ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes port %s on %q, want 127.0.0.1 only", name, p.Target, p.HostIP)
			}
		}
		for _, v := range s.Volumes {
			if v.Type != "bind" {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s mounts %s, which does not exist", name, v.Source)
			}
		}
	}
	mounts := func(svc, src, dst string) {
		t.Helper()
		if !slices.ContainsFunc(cf.Services[svc].Volumes, func(v composeVolume) bool {
			return v.Source == filepath.Join(root(t), src) && v.Target == dst
		}) {
			t.Errorf("service %s does not mount %s at %s", svc, src, dst)
		}
	}
	mounts("grafana", dashboardPath, "/var/lib/grafana/dashboards/composio-guard.json")
	mounts("grafana", "deploy/grafana/provisioning", "/etc/grafana/provisioning")
	mounts("prometheus", rulesFile, "/etc/prometheus/rules.yaml")
	mounts("prometheus", "deploy/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml")

	// Grafana's dashboard provider reads the folder the dashboard is mounted in.
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	if err := yaml.Unmarshal(read(t, "deploy/grafana/provisioning/dashboards/composio-guard.yaml"), &prov); err != nil || len(prov.Providers) != 1 || prov.Providers[0].Options.Path != "/var/lib/grafana/dashboards" {
		t.Errorf("dashboard provider does not read /var/lib/grafana/dashboards: %+v %v", prov, err)
	}
}

// TestComposePrometheusConfig: the compose Prometheus' configuration is
// valid and loads the generated rules.
func TestComposePrometheusConfig(t *testing.T) {
	out := run(t, tool(t, "promtool"), "check", "config", "deploy/prometheus/prometheus.yml")
	if !strings.Contains(string(out), "SUCCESS: 1 rule files found") {
		t.Errorf("promtool check config:\n%s", out)
	}
}
