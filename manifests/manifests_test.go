// Package manifests checks imsflow's Kubernetes manifests offline: every
// overlay is built with kustomize's own Go API (what kubectl kustomize
// runs), every object decoded strictly into the Kubernetes API types,
// KEDA's and the Prometheus Operator's (a misspelt field fails), and the
// invariants that matter are held against the code's own names and
// settings: the functions, their streams and consumers, their metrics,
// their configuration checks and their drain bounds.
package manifests

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/imsflow/imsflow/functions/import/importer"
	"github.com/imsflow/imsflow/functions/ingest/ingest"
	"github.com/imsflow/imsflow/internal/fnmain"
	"github.com/imsflow/imsflow/internal/functions"
	"github.com/imsflow/imsflow/internal/runner"
)

// namespace is where the overlays put imsflow.
const namespace = "imsflow"

// overlays are the deployable builds, with the NATS values each goes with.
var overlays = []struct{ name, values string }{
	{"dev", "nats/values-dev.yaml"},
	{"prod", "nats/values-prod.yaml"},
}

// build is one overlay, rendered and decoded.
type build struct {
	name          string
	objects       []object
	deployments   map[string]*appsv1.Deployment // by name
	configMaps    map[string]*corev1.ConfigMap
	services      map[string]*corev1.Service
	scaledObjects map[string]*scaledObject
	pdbs          map[string]*policyv1.PodDisruptionBudget
	hpas          map[string]*autoscalingv2.HorizontalPodAutoscaler
	policies      map[string]*networkingv1.NetworkPolicy
	ingresses     map[string]*networkingv1.Ingress
	rules         map[string]*monv1.PrometheusRule
	podMonitors   map[string]*monv1.PodMonitor
	values        natsValues
}

// object is one rendered object.
type object struct {
	kind, apiVersion string
	meta             metav1.ObjectMeta
}

// clusterScoped are the kinds without a namespace that the overlays hold.
var clusterScoped = map[string]bool{"Namespace": true}

func render(t *testing.T, overlay, values string) *build {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	b := &build{name: overlay, deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]*corev1.ConfigMap{},
		services: map[string]*corev1.Service{}, scaledObjects: map[string]*scaledObject{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, policies: map[string]*networkingv1.NetworkPolicy{},
		ingresses: map[string]*networkingv1.Ingress{}, rules: map[string]*monv1.PrometheusRule{}, podMonitors: map[string]*monv1.PodMonitor{}}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		kind, name := r.GetKind(), r.GetName()
		var meta metav1.ObjectMeta
		var into any
		switch r.GetApiVersion() + " " + kind {
		case "v1 Namespace":
			into = &corev1.Namespace{}
		case "v1 ServiceAccount":
			into = &corev1.ServiceAccount{}
		case "v1 ConfigMap":
			into = add(b.configMaps, name)
		case "v1 Service":
			into = add(b.services, name)
		case "apps/v1 Deployment":
			into = add(b.deployments, name)
		case "policy/v1 PodDisruptionBudget":
			into = add(b.pdbs, name)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			into = add(b.hpas, name)
		case "networking.k8s.io/v1 NetworkPolicy":
			into = add(b.policies, name)
		case "networking.k8s.io/v1 Ingress":
			into = add(b.ingresses, name)
		case "keda.sh/v1alpha1 ScaledObject":
			into = add(b.scaledObjects, name)
		case "monitoring.coreos.com/v1 PrometheusRule":
			into = add(b.rules, name)
		case "monitoring.coreos.com/v1 PodMonitor":
			into = add(b.podMonitors, name)
		default:
			t.Errorf("overlays/%s: %s %s %s: a kind this test does not know; teach it the kind's Go type", overlay, r.GetApiVersion(), kind, name)
			continue
		}
		if err := yaml.UnmarshalStrict(y, into); err != nil {
			t.Errorf("overlays/%s: %s %s does not decode strictly: %v", overlay, kind, name, err)
			continue
		}
		if err := yaml.Unmarshal(y, &struct {
			Metadata *metav1.ObjectMeta `json:"metadata"`
		}{&meta}); err != nil {
			t.Fatal(err)
		}
		b.objects = append(b.objects, object{kind: kind, apiVersion: r.GetApiVersion(), meta: meta})
	}
	strictFile(t, values, &b.values)
	return b
}

// add makes a new value in m under name and returns it to decode into.
func add[T any](m map[string]*T, name string) *T {
	v := new(T)
	m[name] = v
	return v
}

// strictFile decodes the YAML (or JSON) file at path into v, strictly.
func strictFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s does not decode strictly: %v", path, err)
	}
}

func eachBuild(t *testing.T, f func(t *testing.T, b *build)) {
	for _, o := range overlays {
		t.Run(o.name, func(t *testing.T) { f(t, render(t, o.name, o.values)) })
	}
}

// TestObjects: every object is in imsflow's namespace (but the namespace
// itself) and labelled as part of imsflow.
func TestObjects(t *testing.T) {
	eachBuild(t, func(t *testing.T, b *build) {
		if len(b.objects) == 0 {
			t.Fatal("nothing rendered")
		}
		for _, o := range b.objects {
			switch {
			case clusterScoped[o.kind] && o.meta.Namespace != "":
				t.Errorf("%s %s: namespace %q on a cluster-scoped kind", o.kind, o.meta.Name, o.meta.Namespace)
			case !clusterScoped[o.kind] && o.meta.Namespace != namespace:
				t.Errorf("%s %s: namespace %q, want %q", o.kind, o.meta.Name, o.meta.Namespace, namespace)
			}
			if o.meta.Labels["app.kubernetes.io/part-of"] != "imsflow" {
				t.Errorf("%s %s: no app.kubernetes.io/part-of=imsflow label", o.kind, o.meta.Name)
			}
		}
	})
}

// fnContainer is a Deployment's container that runs a function.
type fnContainer struct {
	deployment *appsv1.Deployment
	container  corev1.Container
	function   string
}

// functionContainers finds the container of each function: the image's
// command is "imsflow run <function>".
func (b *build) functionContainers(t *testing.T) map[string]fnContainer {
	t.Helper()
	out := map[string]fnContainer{}
	for _, d := range b.deployments {
		cs := d.Spec.Template.Spec.Containers
		if len(cs) != 1 {
			t.Errorf("Deployment %s: %d containers, want the function's alone", d.Name, len(cs))
			continue
		}
		c := cs[0]
		if len(c.Args) != 2 || c.Args[0] != "run" || !functions.Known(c.Args[1]) {
			t.Errorf("Deployment %s: args %q, want [run <function>] with a function of %v", d.Name, c.Args, functions.Names)
			continue
		}
		if prev, dup := out[c.Args[1]]; dup {
			t.Errorf("function %s runs in both %s and %s", c.Args[1], prev.deployment.Name, d.Name)
		}
		out[c.Args[1]] = fnContainer{deployment: d, container: c, function: c.Args[1]}
	}
	for _, fn := range functions.Names {
		if _, ok := out[fn]; !ok {
			t.Errorf("no Deployment runs the %s function", fn)
		}
	}
	return out
}

// port returns the container's port named name.
func port(c corev1.Container, name string) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// addrPort is the port of a listen address such as ":8081".
func addrPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// TestFunctionPods: every function's pod has its probes on the admin
// port the code listens on, requests and limits, a locked-down security
// context, the image from the images transformer, and a grace period
// longer than its drain as the code bounds it for the settings given.
func TestFunctionPods(t *testing.T) {
	secrets := secretTemplate(t)
	adminPort := addrPort(t, fnmain.DefaultAdminAddr)
	eachBuild(t, func(t *testing.T, b *build) {
		for fn, fc := range b.functionContainers(t) {
			d, c := fc.deployment, fc.container
			where := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)

			p, ok := port(c, "admin")
			if !ok || p.ContainerPort != adminPort {
				t.Errorf("%s: admin port %+v, want containerPort %d (fnmain.DefaultAdminAddr)", where, p, adminPort)
			}
			for name, pr := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				want := "/healthz"
				if name == "readiness" {
					want = "/readyz"
				}
				if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != want || pr.HTTPGet.Port.String() != "admin" {
					t.Errorf("%s: %s probe %+v, want GET %s on the admin port", where, name, pr, want)
				}
			}

			res := c.Resources
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, lim := res.Requests[r], res.Limits[r]
				if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s and limit %s, want both, request not above limit", where, r, req.String(), lim.String())
				}
			}
			if mem := res.Limits[corev1.ResourceMemory]; mem.Cmp(resource.MustParse("64Mi")) < 0 {
				t.Errorf("%s: memory limit %s below 64Mi (measured use is up to 23 MiB; bursts need room)", where, mem.String())
			}

			ps := d.Spec.Template.Spec.SecurityContext
			if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 ||
				ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("Deployment %s: pod securityContext %+v, want non-root with a user and the runtime's seccomp profile", d.Name, ps)
			}
			cs := c.SecurityContext
			if cs == nil || cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation || cs.ReadOnlyRootFilesystem == nil ||
				!*cs.ReadOnlyRootFilesystem || cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(cs.Capabilities.Add) > 0 {
				t.Errorf("%s: securityContext %+v, want no privilege escalation, a read-only root and every capability dropped", where, cs)
			}
			if s := d.Spec.Template.Spec; s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken || s.ServiceAccountName != "imsflow" {
				t.Errorf("Deployment %s: want service account imsflow with no token mounted", d.Name)
			}
			if img := c.Image; !strings.Contains(img, "/") || !strings.Contains(img, ":") || strings.HasSuffix(img, ":latest") {
				t.Errorf("%s: image %q: want the images transformer's name and a fixed tag", where, img)
			}

			env := b.env(t, c, secrets)
			stop, err := functions.CheckEnv(fn, env)
			if err != nil {
				t.Errorf("%s: its configuration fails the %s function's own checks: %v", where, fn, err)
			}
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
				if s := c.Lifecycle.PreStop.Sleep; s != nil {
					stop += time.Duration(s.Seconds) * time.Second
				}
			}
			if grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second <= stop {
				t.Errorf("%s: terminationGracePeriodSeconds %d, want more than the %s its stop can take", where, ptrOr64(grace), stop)
			}
			if fn == ingest.Function && (c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil) {
				t.Errorf("%s: no preStop sleep: the ingest would refuse requests the ingress still sends it while its endpoints update", where)
			}
			if d.Spec.Replicas != nil {
				t.Errorf("Deployment %s: replicas %d: its autoscaler sets them, and kubectl apply would put this back", d.Name, *d.Spec.Replicas)
			}
			if p, ok := port(c, "http"); fn == ingest.Function {
				cfg, err := fnmain.ReadEnv[ingest.Config](env, false)
				if err != nil || !ok || p.ContainerPort != addrPort(t, cfg.Addr) {
					t.Errorf("%s: http port %+v, want the INGEST_ADDR the ingest listens on (%s, %v)", where, p, cfg.Addr, err)
				}
			}
			if fn == importer.Function {
				b.checkRules(t, d, c, env)
			}
		}
	})
}

// env is what the container's process sees: its envFrom ConfigMaps (as
// rendered) and Secrets (secret.example.yaml, every value filled in), then
// its env. Every non-optional reference must resolve.
func (b *build) env(t *testing.T, c corev1.Container, secrets map[string]*corev1.Secret) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, src := range c.EnvFrom {
		switch {
		case src.ConfigMapRef != nil:
			cm, ok := b.configMaps[src.ConfigMapRef.Name]
			if !ok {
				t.Errorf("container %s: ConfigMap %s is not in the build", c.Name, src.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[src.Prefix+k] = v
			}
		case src.SecretRef != nil:
			s, ok := secrets[src.SecretRef.Name]
			if !ok {
				if src.SecretRef.Optional == nil || !*src.SecretRef.Optional {
					t.Errorf("container %s: Secret %s is in no template of secret.example.yaml", c.Name, src.SecretRef.Name)
				}
				continue
			}
			for k := range s.StringData {
				env[src.Prefix+k] = "example-" + strings.ToLower(k)
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

// checkRules: the import reads its rules file from a mounted ConfigMap
// whose content is valid rules.
func (b *build) checkRules(t *testing.T, d *appsv1.Deployment, c corev1.Container, env map[string]string) {
	t.Helper()
	path := env["IMPORT_RULES_FILE"]
	if path == "" {
		return
	}
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := b.configMaps[v.ConfigMap.Name]
			if !ok {
				t.Fatalf("IMPORT_RULES_FILE %s: ConfigMap %s is not in the build", path, v.ConfigMap.Name)
			}
			data, ok := cm.Data[rel]
			if !ok {
				t.Fatalf("IMPORT_RULES_FILE %s: ConfigMap %s has no key %s", path, cm.Name, rel)
			}
			if _, err := importer.ParseRules([]byte(data)); err != nil {
				t.Errorf("IMPORT_RULES_FILE %s (ConfigMap %s): %v", path, cm.Name, err)
			}
			return
		}
	}
	t.Errorf("IMPORT_RULES_FILE %s: no ConfigMap volume of Deployment %s is mounted there", path, d.Name)
}

// secretTemplate reads secret.example.yaml: Secrets with every value
// empty, for the operator to fill.
func secretTemplate(t *testing.T) map[string]*corev1.Secret {
	t.Helper()
	b, err := os.ReadFile("base/secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*corev1.Secret{}
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var s corev1.Secret
		if err := yaml.UnmarshalStrict([]byte(doc), &s); err != nil {
			t.Fatalf("secret.example.yaml: %v", err)
		}
		if s.Kind != "Secret" || s.Namespace != namespace || len(s.StringData) == 0 {
			t.Errorf("secret.example.yaml: %s %s in %q with %d keys, want Secrets in %s with keys", s.Kind, s.Name, s.Namespace, len(s.StringData), namespace)
		}
		for k, v := range s.StringData {
			if v != "" {
				t.Errorf("secret.example.yaml: %s.%s has a value; the template holds none", s.Name, k)
			}
		}
		if len(s.Data) > 0 {
			t.Errorf("secret.example.yaml: %s has data; the template holds none", s.Name)
		}
		out[s.Name] = &s
	}
	return out
}

// TestSecretTemplateIsNotBuilt: no overlay applies the template's empty
// Secrets over the real ones.
func TestSecretTemplateIsNotBuilt(t *testing.T) {
	eachBuild(t, func(t *testing.T, b *build) {
		for _, o := range b.objects {
			if o.kind == "Secret" {
				t.Errorf("overlays/%s holds Secret %s: secrets are made by hand or by a secret store, never built", b.name, o.meta.Name)
			}
		}
	})
}

// TestScaledObjects: each function that consumes has a ScaledObject on
// the stream and durable consumer the code names, through the NATS
// chart's headless service on the monitoring port the values set; the
// poller never sleeps at zero.
func TestScaledObjects(t *testing.T) {
	eachBuild(t, func(t *testing.T, b *build) {
		fcs := b.functionContainers(t)
		natsURL := b.configValue(t, "NATS_URL")
		release, ns := natsService(t, natsURL)
		wantEndpoint := fmt.Sprintf("%s-headless.%s.svc.cluster.local:%d", release, ns, b.values.Config.Monitor.Port)
		if b.values.Config.ServerNamePrefix == nil || *b.values.Config.ServerNamePrefix != "" {
			t.Error("NATS values: serverNamePrefix must be set empty: KEDA finds a consumer's leader by its server name, the pod name")
		}
		seen := map[string]bool{}
		for name, so := range b.scaledObjects {
			ref := so.Spec.ScaleTargetRef
			if ref == nil {
				t.Errorf("ScaledObject %s: no scaleTargetRef", name)
				continue
			}
			var fc fnContainer
			for _, c := range fcs {
				if c.deployment.Name == ref.Name && (ref.Kind == "" || ref.Kind == "Deployment") {
					fc = c
				}
			}
			if fc.deployment == nil {
				t.Errorf("ScaledObject %s: scaleTargetRef %s is no function's Deployment", name, ref.Name)
				continue
			}
			consumers := functions.Consumers(fc.function)
			if len(consumers) == 0 {
				t.Errorf("ScaledObject %s scales %s, which consumes no stream", name, fc.function)
				continue
			}
			seen[fc.function] = true
			// One nats-jetstream trigger per consumer of the function, in
			// its order: a function with two consumers must wake for either.
			if len(so.Spec.Triggers) != len(consumers) {
				t.Errorf("ScaledObject %s: %d triggers, want one per consumer of %s (%d)", name, len(so.Spec.Triggers), fc.function, len(consumers))
				continue
			}
			for i, tr := range so.Spec.Triggers {
				if tr.Type != "nats-jetstream" {
					t.Errorf("ScaledObject %s: trigger %d is %s, want nats-jetstream", name, i, tr.Type)
				}
				for k := range tr.Metadata {
					if !natsJetStreamMetadata[k] {
						t.Errorf("ScaledObject %s: trigger metadata %q is not a key of KEDA's nats-jetstream scaler", name, k)
					}
				}
				if c := consumers[i]; tr.Metadata["stream"] != c.Stream || tr.Metadata["consumer"] != c.Config.Durable {
					t.Errorf("ScaledObject %s: trigger %d: stream %q consumer %q, want %q and %q (the %s function's)", name, i, tr.Metadata["stream"], tr.Metadata["consumer"], c.Stream, c.Config.Durable, fc.function)
				}
			}
			md := so.Spec.Triggers[0].Metadata
			if md["natsServerMonitoringEndpoint"] != wantEndpoint {
				t.Errorf("ScaledObject %s: endpoint %q, want the headless service %q (KEDA asks the consumer's leader)", name, md["natsServerMonitoringEndpoint"], wantEndpoint)
			}
			if md["account"] == "" && md["accountID"] == "" {
				t.Errorf("ScaledObject %s: no account", name)
			}
			lag, err := strconv.Atoi(md["lagThreshold"])
			if err != nil || lag < 1 {
				t.Errorf("ScaledObject %s: lagThreshold %q, want a positive number", name, md["lagThreshold"])
			}
			if _, err := strconv.Atoi(md["activationLagThreshold"]); err != nil {
				t.Errorf("ScaledObject %s: activationLagThreshold %q, want a number", name, md["activationLagThreshold"])
			}
			minR, maxR := ptrOr(so.Spec.MinReplicaCount, 0), ptrOr(so.Spec.MaxReplicaCount, 100)
			if minR > maxR || maxR < 1 {
				t.Errorf("ScaledObject %s: replicas %d to %d", name, minR, maxR)
			}
			if fc.function == "poller" && minR < 1 {
				t.Errorf("ScaledObject %s: the poller at zero: its timers and sweep would wake it late (docs/deploy.md)", name)
			}
			if fc.function == importer.Function {
				// One replica per backlog that could fill the in-flight slots.
				if inflight, err := strconv.Atoi(b.configValue(t, "IMS_MAX_INFLIGHT")); err == nil && inflight > 0 && lag > inflight {
					t.Errorf("ScaledObject %s: lagThreshold %d above IMS_MAX_INFLIGHT %d", name, lag, inflight)
				}
			}
			if so.Spec.Fallback == nil || so.Spec.Fallback.Replicas < 1 {
				t.Errorf("ScaledObject %s: no fallback to a running replica when the scaler cannot read the lag", name)
			}
		}
		for _, fn := range functions.Names {
			if _, _, consumes := functions.Consumer(fn); consumes && !seen[fn] {
				t.Errorf("no ScaledObject scales the %s function", fn)
			}
		}
	})
}

func ptrOr64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// configValue is a setting of the imsflow-config ConfigMap as rendered.
func (b *build) configValue(t *testing.T, key string) string {
	t.Helper()
	for name, cm := range b.configMaps {
		if strings.HasPrefix(name, "imsflow-config") {
			return cm.Data[key]
		}
	}
	t.Fatal("no imsflow-config ConfigMap")
	return ""
}

// natsService reads the NATS chart's release and namespace from a client
// URL of its service (nats://<release>.<namespace>.svc...:4222).
func natsService(t *testing.T, natsURL string) (release, ns string) {
	t.Helper()
	u, err := url.Parse(strings.Split(natsURL, ",")[0])
	if err != nil {
		t.Fatalf("NATS_URL %q: %v", natsURL, err)
	}
	parts := strings.Split(u.Hostname(), ".")
	if len(parts) < 3 || parts[2] != "svc" {
		t.Fatalf("NATS_URL %q: want the chart's service, nats://<release>.<namespace>.svc.cluster.local:4222", natsURL)
	}
	return parts[0], parts[1]
}

// TestReplicasMatchNATS: the streams' replicas fit the NATS the overlay
// goes with: one node in dev, three in prod.
func TestReplicasMatchNATS(t *testing.T) {
	eachBuild(t, func(t *testing.T, b *build) {
		nodes := 1
		if c := b.values.Config.Cluster; c != nil && c.Enabled {
			nodes = c.Replicas
		}
		replicas, err := strconv.Atoi(b.configValue(t, "NATS_REPLICAS"))
		if err != nil || replicas < 1 || replicas > nodes {
			t.Errorf("NATS_REPLICAS %d with %d NATS nodes", replicas, nodes)
		}
		if b.name == "prod" && (nodes != 3 || replicas != 3) {
			t.Errorf("prod: %d NATS nodes and NATS_REPLICAS %d, want 3 and 3", nodes, replicas)
		}
		v := b.values
		if !v.Config.JetStream.Enabled || v.Config.JetStream.FileStore == nil || !v.Config.JetStream.FileStore.Enabled ||
			v.Config.JetStream.FileStore.PVC == nil || !v.Config.JetStream.FileStore.PVC.Enabled {
			t.Error("NATS values: JetStream with a file store on a persistent volume, please")
		}
		if !v.Config.Monitor.Enabled || v.Config.Monitor.Port != 8222 || !v.PromExporter.Enabled {
			t.Error("NATS values: monitoring on 8222 and the Prometheus exporter, please")
		}
		// A memory stream or bucket in imsflow's topology needs a memory
		// store: off, the chart writes max_memory_store: 0, and nothing
		// memory-backed can be made.
		topo := runner.DefaultTopology(replicas)
		memory := slices.ContainsFunc(topo.Streams, func(s jetstream.StreamConfig) bool { return s.Storage == jetstream.MemoryStorage }) ||
			slices.ContainsFunc(topo.Buckets, func(k jetstream.KeyValueConfig) bool { return k.Storage == jetstream.MemoryStorage })
		if ms := v.Config.JetStream.MemoryStore; memory && (ms == nil || !ms.Enabled || ms.MaxSize == "") {
			t.Error("NATS values: imsflow's topology has memory storage; enable the memory store with a maxSize")
		}
		if b.name == "prod" {
			if hs := v.PodTemplate.TopologySpreadConstraints["kubernetes.io/hostname"]; v.PodTemplate == nil || hs.WhenUnsatisfiable != "DoNotSchedule" || hs.MinDomains < 3 {
				t.Error("prod NATS values: one node per host (topologySpreadConstraints on kubernetes.io/hostname, DoNotSchedule, minDomains 3)")
			}
			if v.PromExporter.PodMonitor == nil || !v.PromExporter.PodMonitor.Enabled {
				t.Error("prod NATS values: the exporter's PodMonitor, for the dashboard and alerts")
			} else {
				// Prometheus selects the exporter's PodMonitor and imsflow's
				// monitoring by the same label.
				natsRelease := v.PromExporter.PodMonitor.Merge.Metadata.Labels["release"]
				for _, o := range b.objects {
					if o.apiVersion == "monitoring.coreos.com/v1" && (natsRelease == "" || o.meta.Labels["release"] != natsRelease) {
						t.Errorf("%s %s: label release %q, the NATS exporter's PodMonitor %q: Prometheus must select both", o.kind, o.meta.Name, o.meta.Labels["release"], natsRelease)
					}
				}
			}
			for _, fc := range b.functionContainers(t) {
				if img := fc.container.Image; strings.HasSuffix(img, ":local") || !strings.Contains(strings.Split(img, "/")[0], ".") {
					t.Errorf("prod %s: image %q: want one from a registry, named by its host", fc.function, img)
				}
			}
		}
	})
}

// TestDisruption: one PodDisruptionBudget per function with
// maxUnavailable 1 selecting exactly its pods; in prod, replicas spread
// over zones and hosts.
func TestDisruption(t *testing.T) {
	eachBuild(t, func(t *testing.T, b *build) {
		for fn, fc := range b.functionContainers(t) {
			pods := labels.Set(fc.deployment.Spec.Template.Labels)
			var covering []string
			for name, pdb := range b.pdbs {
				sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
				if err != nil {
					t.Fatal(err)
				}
				if !sel.Empty() && sel.Matches(pods) {
					covering = append(covering, name)
					if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
						t.Errorf("PodDisruptionBudget %s: want maxUnavailable 1 alone", name)
					}
					if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
						t.Errorf("PodDisruptionBudget %s: crash-looping pods would block a node's drain (unhealthyPodEvictionPolicy AlwaysAllow)", name)
					}
				}
			}
			if len(covering) != 1 {
				t.Errorf("%s: PodDisruptionBudgets %v, want exactly one", fn, covering)
			}
			if b.name != "prod" {
				continue
			}
			s := fc.deployment.Spec.Template.Spec
			if s.Affinity == nil || s.Affinity.PodAntiAffinity == nil || len(s.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
				t.Errorf("prod %s: no pod anti-affinity", fn)
			} else if sel, err := metav1.LabelSelectorAsSelector(s.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector); err != nil || !sel.Matches(pods) {
				t.Errorf("prod %s: the anti-affinity does not select the function's own pods", fn)
			}
			if len(s.TopologySpreadConstraints) == 0 {
				t.Errorf("prod %s: no topology spread", fn)
			}
			for _, c := range s.TopologySpreadConstraints {
				if !slices.Contains(c.MatchLabelKeys, "pod-template-hash") {
					t.Errorf("prod %s: topology spread on %s counts every ReplicaSet's pods (matchLabelKeys pod-template-hash)", fn, c.TopologyKey)
				}
			}
		}
	})
}

// TestIngestReachable: the Service and the Ingress reach the ingest's
// HTTP port; its autoscaler keeps one replica or more; a NetworkPolicy
// lets the ingress controller in.
func TestIngestReachable(t *testing.T) {
	eachBuild(t, func(t *testing.T, b *build) {
		fc := b.functionContainers(t)[ingest.Function]
		if fc.deployment == nil {
			return
		}
		pods := labels.Set(fc.deployment.Spec.Template.Labels)
		var svc *corev1.Service
		for _, s := range b.services {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(pods) && len(s.Spec.Selector) > 0 {
				svc = s
			}
		}
		if svc == nil {
			t.Fatal("no Service selects the ingest")
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := port(fc.container, p.TargetPort.String()); !ok {
				t.Errorf("Service %s: targetPort %s is not a port of the ingest", svc.Name, p.TargetPort.String())
			}
		}
		hpa, ok := b.hpas[fc.deployment.Name]
		if !ok || hpa.Spec.ScaleTargetRef.Name != fc.deployment.Name || hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 1 {
			t.Errorf("ingest: want a HorizontalPodAutoscaler on %s keeping one replica or more", fc.deployment.Name)
		}
		for _, ing := range b.ingresses {
			for _, r := range ing.Spec.Rules {
				for _, p := range r.HTTP.Paths {
					if be := p.Backend.Service; be == nil || be.Name != svc.Name {
						t.Errorf("Ingress %s: path %s goes elsewhere than the ingest's Service", ing.Name, p.Path)
					}
				}
			}
			if len(ing.Spec.TLS) == 0 {
				t.Errorf("Ingress %s: no TLS (SMN and EventGrid call over HTTPS)", ing.Name)
			}
		}
		if b.name == "prod" && len(b.ingresses) == 0 {
			t.Error("prod: no Ingress for the ingest")
		}
		if !b.admits(pods, "http") {
			t.Error("no NetworkPolicy admits traffic to the ingest's http port")
		}
	})
}

// TestNetworkPolicies: everything is denied by default; every function
// may reach NATS on the port NATS_URL names and HTTPS, and be scraped on
// its admin port.
func TestNetworkPolicies(t *testing.T) {
	eachBuild(t, func(t *testing.T, b *build) {
		deny := false
		for _, p := range b.policies {
			if len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
				len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 && len(p.Spec.PolicyTypes) == 2 {
				deny = true
			}
		}
		if !deny {
			t.Error("no default-deny NetworkPolicy (every pod, ingress and egress, no rule)")
		}
		u, err := url.Parse(strings.Split(b.configValue(t, "NATS_URL"), ",")[0])
		if err != nil {
			t.Fatal(err)
		}
		natsPort, _ := strconv.Atoi(u.Port())
		for fn, fc := range b.functionContainers(t) {
			pods := labels.Set(fc.deployment.Spec.Template.Labels)
			for _, want := range []int{natsPort, 443, 53} {
				if !b.egress(pods, want) {
					t.Errorf("%s: no NetworkPolicy lets it reach port %d", fn, want)
				}
			}
			if !b.admits(pods, "admin") {
				t.Errorf("%s: no NetworkPolicy lets Prometheus reach its admin port", fn)
			}
		}
	})
}

// egress reports whether a policy selecting pods allows egress to port.
func (b *build) egress(pods labels.Set, port int) bool {
	return b.allows(pods, func(p *networkingv1.NetworkPolicy) (out [][]networkingv1.NetworkPolicyPort) {
		for _, r := range p.Spec.Egress {
			out = append(out, r.Ports)
		}
		return out
	}, func(pp networkingv1.NetworkPolicyPort) bool { return pp.Port != nil && pp.Port.IntValue() == port })
}

// admits reports whether a policy selecting pods allows ingress to the
// named port.
func (b *build) admits(pods labels.Set, portName string) bool {
	return b.allows(pods, func(p *networkingv1.NetworkPolicy) (out [][]networkingv1.NetworkPolicyPort) {
		for _, r := range p.Spec.Ingress {
			out = append(out, r.Ports)
		}
		return out
	}, func(pp networkingv1.NetworkPolicyPort) bool { return pp.Port != nil && pp.Port.String() == portName })
}

// allows reports whether a policy selecting pods has a rule (of those
// rules gives, as their ports) with a port that match accepts.
func (b *build) allows(pods labels.Set, rules func(*networkingv1.NetworkPolicy) [][]networkingv1.NetworkPolicyPort, match func(networkingv1.NetworkPolicyPort) bool) bool {
	for _, p := range b.policies {
		if sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector); err != nil || !sel.Matches(pods) {
			continue
		}
		for _, ports := range rules(p) {
			if slices.ContainsFunc(ports, match) {
				return true
			}
		}
	}
	return false
}

// TestNATSNetworkPolicy: the policy beside the chart lets in imsflow's
// clients, the cluster's routes, KEDA on the monitoring port and
// Prometheus on the exporter's, on the NATS pods.
func TestNATSNetworkPolicy(t *testing.T) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "nats")
	if err != nil {
		t.Fatalf("kustomize build nats: %v", err)
	}
	want := map[string]int32{namespace: 4222, "keda": 8222, "monitoring": 7777}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var np networkingv1.NetworkPolicy
		if r.GetKind() != "NetworkPolicy" {
			t.Errorf("nats: %s %s: only NetworkPolicies expected", r.GetKind(), r.GetName())
			continue
		}
		if err := yaml.UnmarshalStrict(y, &np); err != nil {
			t.Fatalf("nats: %v", err)
		}
		if np.Namespace != "nats" || np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "nats" {
			t.Errorf("nats: NetworkPolicy %s in %q selects %v, want the NATS pods in nats", np.Name, np.Namespace, np.Spec.PodSelector.MatchLabels)
		}
		for _, rule := range np.Spec.Ingress {
			for _, from := range rule.From {
				if from.NamespaceSelector == nil {
					continue
				}
				ns := from.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]
				if p, ok := want[ns]; ok && slices.ContainsFunc(rule.Ports, func(pp networkingv1.NetworkPolicyPort) bool { return pp.Port.IntValue() == int(p) }) {
					delete(want, ns)
				}
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("nats: no NetworkPolicy admits %v", want)
	}
}
