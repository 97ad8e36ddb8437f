package deploy

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// The prometheus-operator objects, as far as our manifests use them. Decoded
// strictly like the rest: a misspelt field fails here, not in the cluster.
type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
}

type scrapeEndpoint struct {
	Port          string `json:"port"`
	Path          string `json:"path,omitempty"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
}

type podMonitor struct {
	typeMeta `json:",inline"`
	Spec     struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []scrapeEndpoint     `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type serviceMonitor struct {
	typeMeta `json:",inline"`
	Spec     struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []scrapeEndpoint     `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRuleObj struct {
	typeMeta `json:",inline"`
	Spec     struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []struct {
				Alert       string            `json:"alert,omitempty"`
				Record      string            `json:"record,omitempty"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// kinds maps apiVersion/kind to a fresh typed value to decode into.
var kinds = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return &podMonitor{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &serviceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &prometheusRuleObj{} },
}

// rendered is an overlay's output, decoded.
type rendered struct {
	objs   map[string]any // "Kind/name" -> typed object
	byKind map[string][]any
}

func (r rendered) get(t *testing.T, kind, name string) any {
	t.Helper()
	o, ok := r.objs[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s/%s in the rendered overlay", kind, name)
	}
	return o
}

// kustomize renders dir with kubectl kustomize (or kustomize build).
func kustomize(t *testing.T, dir string) []byte {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err == nil {
		return run(t, "kubectl", "kustomize", dir)
	}
	return run(t, tool(t, "kustomize"), "build", dir)
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	out := kustomize(t, dir)
	r := rendered{objs: map[string]any{}, byKind: map[string][]any{}}
	for i, doc := range bytes.Split(out, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm typeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: document %d: %v", dir, i, err)
		}
		newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			t.Errorf("%s: %s %s/%s: unexpected apiVersion/kind", dir, tm.APIVersion, tm.Kind, tm.Metadata.Name)
			continue
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s: %s/%s does not decode strictly: %v", dir, tm.Kind, tm.Metadata.Name, err)
			continue
		}
		key := tm.Kind + "/" + tm.Metadata.Name
		if _, dup := r.objs[key]; dup {
			t.Errorf("%s: %s twice", dir, key)
		}
		r.objs[key] = obj
		r.byKind[tm.Kind] = append(r.byKind[tm.Kind], obj)
	}
	return r
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: a, image: b, securityContxt: {}}]\n")
	if err := yaml.UnmarshalStrict(doc, &appsv1.Deployment{}); err == nil {
		t.Fatal("a misspelt field decoded without error")
	}
	if err := yaml.UnmarshalStrict([]byte("apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nspec: {podMetricEndpoints: []}\n"), &podMonitor{}); err == nil {
		t.Fatal("a misspelt PodMonitor field decoded without error")
	}
}

// checkHardened asserts the security properties of the guard's container and
// its pod, and returns the env it runs with (ConfigMap and container env).
func checkHardened(t *testing.T, r rendered, pod corev1.PodSpec, c corev1.Container) map[string]string {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile is not RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod mounts a service account token it never uses")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container runAsNonRoot is not true")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("container is privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Error("capabilities are not drop [ALL] with none added")
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("container seccompProfile is not RuntimeDefault")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("container needs a CPU request (HPA, scheduling) and a memory limit")
	}

	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		cm, ok := r.objs["ConfigMap/"+ef.ConfigMapRef.Name].(*corev1.ConfigMap)
		if !ok {
			t.Fatalf("envFrom names ConfigMap %q, which the overlay does not render", ef.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}

	// Probes reach the admin port (9090), by name or number.
	port := func(p *corev1.Probe, what string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", what)
			return
		}
		n := p.HTTPGet.Port.IntValue()
		if n == 0 {
			for _, cp := range c.Ports {
				if cp.Name == p.HTTPGet.Port.String() {
					n = int(cp.ContainerPort)
				}
			}
		}
		if n != 9090 {
			t.Errorf("%s probe on port %s (%d), want the admin port 9090", what, p.HTTPGet.Port.String(), n)
		}
		if want := map[string]string{"liveness": "/livez"}[what]; want != "" && p.HTTPGet.Path != want {
			t.Errorf("%s probe path %s, want %s", what, p.HTTPGet.Path, want)
		} else if want == "" && p.HTTPGet.Path != "/readyz" {
			t.Errorf("%s probe path %s, want /readyz", what, p.HTTPGet.Path)
		}
	}
	port(c.ReadinessProbe, "readiness")
	port(c.LivenessProbe, "liveness")
	port(c.StartupProbe, "startup")
	if _, p, _ := net.SplitHostPort(env["GUARD_ADMIN_ADDR"]); p != "9090" {
		t.Errorf("GUARD_ADMIN_ADDR %q, want port 9090", env["GUARD_ADMIN_ADDR"])
	}

	// The pod outlives the proxy's drain.
	drain, err1 := time.ParseDuration(env["GUARD_DRAIN_DELAY"])
	grace, err2 := time.ParseDuration(env["GUARD_SHUTDOWN_GRACE"])
	if err1 != nil || err2 != nil {
		t.Errorf("GUARD_DRAIN_DELAY %q / GUARD_SHUTDOWN_GRACE %q must be set explicitly", env["GUARD_DRAIN_DELAY"], env["GUARD_SHUTDOWN_GRACE"])
	} else if tg := pod.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second <= drain+grace {
		t.Errorf("terminationGracePeriodSeconds (%s) is not above drain %v + shutdown grace %v", ptrString(tg), drain, grace)
	}
	if !strings.HasPrefix(c.Image, "ghcr.io/composio-guard/composio-guard:") {
		t.Errorf("image %q: the overlay's images entry did not apply", c.Image)
	}
	return env
}

func selects(t *testing.T, sel *metav1.LabelSelector, lbls map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(lbls))
}

func TestSidecarOverlay(t *testing.T) {
	r := render(t, "deploy/kubernetes/overlays/sidecar")
	if n := len(r.byKind["Deployment"]); n != 1 {
		t.Fatalf("%d Deployments, want the one example application", n)
	}
	d := r.byKind["Deployment"][0].(*appsv1.Deployment)
	pod := d.Spec.Template.Spec
	var guard *corev1.Container
	for i := range pod.InitContainers {
		if pod.InitContainers[i].Name == "composio-guard" {
			guard = &pod.InitContainers[i]
		}
	}
	if guard == nil {
		t.Fatal("no init container composio-guard")
	}
	if guard.RestartPolicy == nil || *guard.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the guard init container lacks restartPolicy: Always (native sidecar)")
	}
	env := checkHardened(t, r, pod, *guard)
	if h, _, _ := net.SplitHostPort(env["GUARD_LISTEN_ADDR"]); h != "127.0.0.1" {
		t.Errorf("sidecar GUARD_LISTEN_ADDR %q, want loopback only", env["GUARD_LISTEN_ADDR"])
	}
	if len(pod.Containers) == 0 {
		t.Fatal("no application container")
	}
	for _, c := range pod.Containers {
		var base string
		for _, e := range c.Env {
			if e.Name == "COMPOSIO_BASE_URL" {
				base = e.Value
			}
		}
		u, err := url.Parse(base)
		if err != nil || u.Scheme != "http" || u.Host != "127.0.0.1:8080" && u.Host != "localhost:8080" {
			t.Errorf("container %s: COMPOSIO_BASE_URL %q, want the sidecar on localhost:8080", c.Name, base)
		}
	}

	pm := r.get(t, "PodMonitor", "composio-guard").(*podMonitor)
	if !selects(t, &pm.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("PodMonitor selector %v misses the pod labels %v", pm.Spec.Selector, d.Spec.Template.Labels)
	}
	checkScrapePort(t, pm.Spec.PodMetricsEndpoints, guard.Ports)
	checkRules(t, r)
}

func TestGatewayOverlay(t *testing.T) {
	r := render(t, "deploy/kubernetes/overlays/gateway")
	for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "ConfigMap", "ServiceAccount"} {
		if len(r.byKind[k]) != 1 {
			t.Errorf("%d objects of kind %s, want 1", len(r.byKind[k]), k)
		}
	}
	d := r.get(t, "Deployment", "composio-guard").(*appsv1.Deployment)
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "composio-guard" {
		t.Fatalf("containers %v, want the one composio-guard", pod.Containers)
	}
	c := pod.Containers[0]
	env := checkHardened(t, r, pod, c)
	if env["GUARD_LOCK_BACKEND"] != "redis" {
		t.Errorf("GUARD_LOCK_BACKEND %q, want redis (replicas share the lock)", env["GUARD_LOCK_BACKEND"])
	}
	if !strings.HasPrefix(env["GUARD_REDIS_URL"], "secret:") {
		t.Errorf("GUARD_REDIS_URL %q must come from a Secret", env["GUARD_REDIS_URL"])
	}
	if h, p, _ := net.SplitHostPort(env["GUARD_LISTEN_ADDR"]); h != "" && h != "0.0.0.0" || p != "8080" {
		t.Errorf("gateway GUARD_LISTEN_ADDR %q, want :8080", env["GUARD_LISTEN_ADDR"])
	}
	if len(pod.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints")
	}
	podLabels := d.Spec.Template.Labels
	for _, tsc := range pod.TopologySpreadConstraints {
		if !selects(t, tsc.LabelSelector, podLabels) {
			t.Errorf("topology spread on %s selects other pods", tsc.TopologyKey)
		}
	}
	if d.Spec.Replicas != nil {
		t.Error("Deployment sets replicas: it would fight the HPA on every apply")
	}

	svc := r.get(t, "Service", "composio-guard").(*corev1.Service)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v misses the pods %v", svc.Spec.Selector, podLabels)
	}
	names := map[string]int32{}
	for _, p := range c.Ports {
		names[p.Name] = p.ContainerPort
	}
	svcPorts := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = p.Port
		if _, ok := names[p.TargetPort.String()]; !ok && p.TargetPort.IntValue() == 0 {
			t.Errorf("Service port %s targets %s, which the container does not name", p.Name, p.TargetPort.String())
		}
	}
	if svcPorts["http"] != 8080 || svcPorts["admin"] != 9090 {
		t.Errorf("Service ports %v, want http 8080 and admin 9090", svcPorts)
	}

	pdb := r.get(t, "PodDisruptionBudget", "composio-guard").(*policyv1.PodDisruptionBudget)
	if !selects(t, pdb.Spec.Selector, podLabels) {
		t.Error("PodDisruptionBudget selects other pods")
	}
	hpa := r.get(t, "HorizontalPodAutoscaler", "composio-guard").(*autoscalingv2.HorizontalPodAutoscaler)
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != d.Name {
		t.Errorf("HPA scales %v, want Deployment %s", hpa.Spec.ScaleTargetRef, d.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Error("HPA minReplicas below 2: a PDB with maxUnavailable 1 would allow zero pods")
	}

	sm := r.get(t, "ServiceMonitor", "composio-guard").(*serviceMonitor)
	if !selects(t, &sm.Spec.Selector, svc.Labels) {
		t.Errorf("ServiceMonitor selector %v misses the Service labels %v", sm.Spec.Selector, svc.Labels)
	}
	for _, ep := range sm.Spec.Endpoints {
		if svcPorts[ep.Port] != 9090 {
			t.Errorf("ServiceMonitor scrapes port %q, want the Service's admin port", ep.Port)
		}
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Error("ServiceMonitor has no endpoint")
	}
	checkRules(t, r)
}

func checkScrapePort(t *testing.T, eps []scrapeEndpoint, ports []corev1.ContainerPort) {
	t.Helper()
	if len(eps) == 0 {
		t.Fatal("monitor has no endpoint")
	}
	for _, ep := range eps {
		found := false
		for _, p := range ports {
			found = found || p.Name == ep.Port && p.ContainerPort == 9090
		}
		if !found || ep.Path != "" && ep.Path != "/metrics" {
			t.Errorf("monitor scrapes port %q path %q, want the container's admin port and /metrics", ep.Port, ep.Path)
		}
	}
}

// checkRules: the PrometheusRule carries every alert of the source.
func checkRules(t *testing.T, r rendered) {
	t.Helper()
	pr := r.get(t, "PrometheusRule", "composio-guard").(*prometheusRuleObj)
	var got []string
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			got = append(got, rule.Alert)
		}
	}
	var want []string
	for _, a := range loadSource(t).Alerts {
		want = append(want, a.Alert)
	}
	if !slices.Equal(got, want) {
		t.Errorf("PrometheusRule alerts %v, want %v", got, want)
	}
	// The monitors' job names must match the ComposioGuardDown alert.
	for key := range r.objs {
		if strings.HasPrefix(key, "PodMonitor/") || strings.HasPrefix(key, "ServiceMonitor/") {
			if !strings.Contains(key, "composio-guard") {
				t.Errorf("%s: its job name would not match up{job=~\".*composio-guard.*\"}", key)
			}
		}
	}
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
