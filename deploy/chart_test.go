package deploy

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	chartDir  = "helm/inbox-gateway"
	release   = "gw"
	namespace = "inbox"
	secretDir = "/run/secrets/inboxhub-gateway"
)

// secretVariables are the gateway's secrets, each read from NAME or from the file in NAME_FILE
// (internal/config); the chart must only ever use the file form.
var secretVariables = []string{
	"INBOXHUB_IDENTIFIER", "INBOXHUB_PASSWORD", "INBOXHUB_API_KEY", "REDIS_URL",
	"GATEWAY_API_KEYS", "GATEWAY_JWT_HS256_SECRET", "GATEWAY_JWT_RS256_PUBLIC_KEY",
	"TOKEN_ENCRYPTION_KEY", "TOKEN_ENCRYPTION_OLD_KEYS", "INBOXHUB_WEBHOOK_SECRET", "CRM_SIGNING_SECRET",
}

// requiredSecrets are mounted whatever the values say: the gateway cannot run without them.
var requiredSecrets = []string{"INBOXHUB_IDENTIFIER", "INBOXHUB_PASSWORD", "INBOXHUB_API_KEY", "REDIS_URL"}

// object is one rendered manifest, decoded into the typed struct of its kind.
type object struct {
	Kind, Name string
	Obj        any
}

// newTyped gives the typed struct a rendered kind decodes into; the chart may render no other.
func newTyped(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1 Secret":
		return &corev1.Secret{}, true
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	}
	return nil, false
}

// render renders the chart offline (no cluster) with the values of the files given, then overrides.
func render(t *testing.T, valueFiles []string, overrides map[string]any) (map[string]string, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals := map[string]any{}
	for _, f := range valueFiles {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		vals = chartutil.CoalesceTables(v.AsMap(), vals)
	}
	vals = chartutil.CoalesceTables(overrides, vals)
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}
	top, err := chartutil.ToRenderValues(chrt, vals,
		chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		t.Fatalf("render values: %v", err)
	}
	return engine.Engine{Strict: true}.Render(chrt, top)
}

// decode splits every rendered template into its documents and decodes each strictly (unknown or
// duplicate fields fail) into its kind's typed struct. NOTES.txt is returned apart.
func decode(t *testing.T, files map[string]string) (objs []object, notes string) {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			notes = files[name]
			continue
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(files[name], -1) {
			if isBlank(doc) {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", name, err, doc)
			}
			obj, ok := newTyped(tm.APIVersion, tm.Kind)
			if !ok {
				t.Errorf("%s: unknown kind %s %s", name, tm.APIVersion, tm.Kind)
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s: %s does not decode strictly: %v", name, tm.Kind, err)
				continue
			}
			meta := obj.(metav1.Object)
			if meta.GetName() == "" {
				t.Errorf("%s: %s without a name", name, tm.Kind)
			}
			objs = append(objs, object{Kind: tm.Kind, Name: meta.GetName(), Obj: obj})
		}
	}
	return objs, notes
}

// isBlank says whether a YAML document holds only blank lines and comments.
func isBlank(doc string) bool {
	for line := range strings.Lines(doc) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// golden compares the whole rendered chart with testdata/<name>.golden.yaml (-update rewrites it).
func golden(t *testing.T, name string, files map[string]string) {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		if isBlank(files[n]) {
			continue
		}
		fmt.Fprintf(&b, "# Source: %s\n%s\n", n, strings.TrimSpace(files[n]))
	}
	path := filepath.Join("testdata", name+".golden.yaml")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(want, b.Bytes()) {
		t.Errorf("rendered chart differs from %s; if the change is meant, run go test -update and review the diff", path)
	}
}

func kindNames(objs []object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Kind+"/"+o.Name)
	}
	sort.Strings(out)
	return out
}

func find[T any](t *testing.T, objs []object, kind, name string) T {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			return o.Obj.(T)
		}
	}
	t.Fatalf("no %s/%s rendered", kind, name)
	var zero T
	return zero
}

func envOf(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func seconds(t *testing.T, env map[string]string, name string) int64 {
	t.Helper()
	d, err := time.ParseDuration(env[name])
	if err != nil {
		t.Fatalf("%s=%q: %v", name, env[name], err)
	}
	return int64(d / time.Second)
}

func TestChartDefaultValues(t *testing.T) {
	files, err := render(t, nil, nil)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	golden(t, "default", files)
	objs, notes := decode(t, files)
	want := []string{
		"Deployment/gw-inbox-gateway",
		"HorizontalPodAutoscaler/gw-inbox-gateway",
		"NetworkPolicy/gw-inbox-gateway",
		"PodDisruptionBudget/gw-inbox-gateway",
		"Secret/gw-inbox-gateway",
		"Service/gw-inbox-gateway",
		"Service/gw-inbox-gateway-metrics",
		"ServiceAccount/gw-inbox-gateway",
	}
	if got := kindNames(objs); !slices.Equal(got, want) {
		t.Fatalf("rendered objects:\n got %v\nwant %v", got, want)
	}

	api := find[*appsv1.Deployment](t, objs, "Deployment", "gw-inbox-gateway")
	checkPod(t, api, 0)
	env := envOf(api.Spec.Template.Spec.Containers[0])
	if env["GATEWAY_SYNC_WORKERS"] != "2" || env["GATEWAY_WEBHOOK_WORKERS"] != "8" {
		t.Errorf("one role: every replica runs workers, got sync=%q webhook=%q", env["GATEWAY_SYNC_WORKERS"], env["GATEWAY_WEBHOOK_WORKERS"])
	}
	if api.Spec.Replicas != nil {
		t.Errorf("the HPA owns the replica count, but the Deployment sets %d", *api.Spec.Replicas)
	}
	// 1 / the HPA's 6 replicas at most, rounded down.
	if env["UPSTREAM_QUOTA_FALLBACK"] != "0.166" {
		t.Errorf("UPSTREAM_QUOTA_FALLBACK=%q, want 0.166 (1/6 rounded down)", env["UPSTREAM_QUOTA_FALLBACK"])
	}
	if c := api.Spec.Template.Spec.Containers[0]; c.Lifecycle != nil {
		t.Errorf("no preStop by default (the drain delay does its work), got %+v", c.Lifecycle)
	}

	// The chart-made Secret holds the required keys (empty: the gateway then names them at start).
	secret := find[*corev1.Secret](t, objs, "Secret", "gw-inbox-gateway")
	var keys []string
	for k := range secret.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !slices.Equal(keys, []string{"INBOXHUB_API_KEY", "INBOXHUB_IDENTIFIER", "INBOXHUB_PASSWORD", "REDIS_URL"}) {
		t.Errorf("secret keys %v", keys)
	}
	checkSecretsMounted(t, api, secret)
	checkServices(t, objs)
	checkNetworkPolicy(t, find[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "gw-inbox-gateway"), "api", true)
	checkAutoscaling(t, objs, api)
	checkPDB(t, find[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "gw-inbox-gateway"), api)
	checkServiceAccount(t, objs, api)
	if !strings.Contains(notes, "WARNING: secrets.values is missing INBOXHUB_IDENTIFIER, INBOXHUB_PASSWORD, INBOXHUB_API_KEY, REDIS_URL") {
		t.Errorf("NOTES.txt does not warn about the missing credentials:\n%s", notes)
	}
}

func TestChartSplitRolesExistingSecretServiceMonitor(t *testing.T) {
	files, err := render(t, []string{filepath.Join(chartDir, "ci", "split-roles-values.yaml")}, nil)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	golden(t, "split-roles", files)
	objs, notes := decode(t, files)
	want := []string{
		"Deployment/gw-inbox-gateway",
		"Deployment/gw-inbox-gateway-worker",
		"HorizontalPodAutoscaler/gw-inbox-gateway",
		"NetworkPolicy/gw-inbox-gateway",
		"NetworkPolicy/gw-inbox-gateway-worker",
		"PodDisruptionBudget/gw-inbox-gateway",
		"PodDisruptionBudget/gw-inbox-gateway-worker",
		"Service/gw-inbox-gateway",
		"Service/gw-inbox-gateway-metrics",
		"ServiceAccount/gw-inbox-gateway",
		"ServiceMonitor/gw-inbox-gateway",
	}
	if got := kindNames(objs); !slices.Equal(got, want) {
		t.Fatalf("rendered objects (no Secret with existingSecret):\n got %v\nwant %v", got, want)
	}

	api := find[*appsv1.Deployment](t, objs, "Deployment", "gw-inbox-gateway")
	worker := find[*appsv1.Deployment](t, objs, "Deployment", "gw-inbox-gateway-worker")
	checkPod(t, api, 3)
	checkPod(t, worker, 3)
	apiEnv, workerEnv := envOf(api.Spec.Template.Spec.Containers[0]), envOf(worker.Spec.Template.Spec.Containers[0])
	if apiEnv["GATEWAY_SYNC_WORKERS"] != "0" || apiEnv["GATEWAY_WEBHOOK_WORKERS"] != "0" {
		t.Errorf("API role: sync=%q webhook=%q, want 0 and 0", apiEnv["GATEWAY_SYNC_WORKERS"], apiEnv["GATEWAY_WEBHOOK_WORKERS"])
	}
	if workerEnv["GATEWAY_SYNC_WORKERS"] != "4" || workerEnv["GATEWAY_WEBHOOK_WORKERS"] != "16" {
		t.Errorf("worker role: sync=%q webhook=%q, want 4 and 16", workerEnv["GATEWAY_SYNC_WORKERS"], workerEnv["GATEWAY_WEBHOOK_WORKERS"])
	}
	if worker.Spec.Replicas == nil || *worker.Spec.Replicas != 2 {
		t.Errorf("worker replicas %s, want 2", ptrString(worker.Spec.Replicas))
	}
	// 1 / (8 API replicas at most + 2 workers).
	if apiEnv["UPSTREAM_QUOTA_FALLBACK"] != "0.1" || workerEnv["UPSTREAM_QUOTA_FALLBACK"] != "0.1" {
		t.Errorf("UPSTREAM_QUOTA_FALLBACK api=%q worker=%q, want 0.1", apiEnv["UPSTREAM_QUOTA_FALLBACK"], workerEnv["UPSTREAM_QUOTA_FALLBACK"])
	}
	if apiEnv["INBOXHUB_BASE_URL"] != "https://api.inbox-hub.example.invalid" {
		t.Errorf("config not passed: INBOXHUB_BASE_URL=%q", apiEnv["INBOXHUB_BASE_URL"])
	}
	for _, d := range []*appsv1.Deployment{api, worker} {
		sleep := d.Spec.Template.Spec.Containers[0].Lifecycle
		if sleep == nil || sleep.PreStop == nil || sleep.PreStop.Sleep == nil || sleep.PreStop.Sleep.Seconds != 3 {
			t.Errorf("%s: want a preStop sleep of 3 s (the image has no shell), got %+v", d.Name, sleep)
		}
		vol := secretVolume(t, d)
		if vol.SecretName != "inbox-gateway-credentials" {
			t.Errorf("%s mounts Secret %q, want the existing one", d.Name, vol.SecretName)
		}
		var items []string
		for _, it := range vol.Items {
			items = append(items, it.Key)
		}
		wantItems := append(slices.Clone(requiredSecrets), "GATEWAY_API_KEYS", "TOKEN_ENCRYPTION_KEY", "INBOXHUB_WEBHOOK_SECRET", "CRM_SIGNING_SECRET")
		if !slices.Equal(items, wantItems) {
			t.Errorf("%s mounts keys %v, want %v", d.Name, items, wantItems)
		}
		checkSecretsMounted(t, d, nil)
	}
	if api.Spec.Template.Labels["app.kubernetes.io/component"] != "api" || worker.Spec.Template.Labels["app.kubernetes.io/component"] != "worker" {
		t.Errorf("role labels: api %v, worker %v", api.Spec.Template.Labels, worker.Spec.Template.Labels)
	}
	if labels.SelectorFromSet(api.Spec.Selector.MatchLabels).Matches(labels.Set(worker.Spec.Template.Labels)) {
		t.Error("the API Deployment's selector also selects the worker pods")
	}

	checkServices(t, objs)
	if labels.SelectorFromSet(find[*corev1.Service](t, objs, "Service", "gw-inbox-gateway").Spec.Selector).Matches(labels.Set(worker.Spec.Template.Labels)) {
		t.Error("the public Service sends traffic to worker pods")
	}
	checkNetworkPolicy(t, find[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "gw-inbox-gateway"), "api", false)
	checkNetworkPolicy(t, find[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "gw-inbox-gateway-worker"), "worker", false)
	checkAutoscaling(t, objs, api)
	checkPDB(t, find[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "gw-inbox-gateway"), api)
	checkPDB(t, find[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "gw-inbox-gateway-worker"), worker)
	checkServiceAccount(t, objs, api)

	sm := find[*monitoringv1.ServiceMonitor](t, objs, "ServiceMonitor", "gw-inbox-gateway")
	metricsSvc := find[*corev1.Service](t, objs, "Service", "gw-inbox-gateway-metrics")
	smSel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !smSel.Matches(labels.Set(metricsSvc.Labels)) {
		t.Errorf("the ServiceMonitor's selector %v misses the metrics Service %v", sm.Spec.Selector, metricsSvc.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
	}
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack the configured release label", sm.Labels)
	}
	if strings.Contains(notes, "WARNING") {
		t.Errorf("NOTES.txt warns although the Secret is external and the base URL set:\n%s", notes)
	}
}

// TestChartSecretValuesStayInTheSecret renders generated secret values and checks that they
// appear only in the Secret, base64-encoded, never in a pod spec, an annotation or NOTES.txt.
func TestChartSecretValuesStayInTheSecret(t *testing.T) {
	values := map[string]any{}
	for _, k := range secretVariables {
		values[k] = "fake-" + randomHex(t)
	}
	files, err := render(t, nil, map[string]any{"secrets": map[string]any{"values": values}})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	objs, notes := decode(t, files)
	secret := find[*corev1.Secret](t, objs, "Secret", "gw-inbox-gateway")
	for k, v := range values {
		if string(secret.Data[k]) != v {
			t.Errorf("Secret key %s does not hold its value", k)
		}
	}
	for name, text := range files {
		if strings.HasSuffix(name, "/secret.yaml") {
			continue
		}
		for k, v := range values {
			s := v.(string)
			if strings.Contains(text, s) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(s))) {
				t.Errorf("%s carries the value of %s", name, k)
			}
		}
	}
	if strings.Contains(notes, "WARNING: secrets") {
		t.Errorf("NOTES.txt warns although every secret is given")
	}
	api := find[*appsv1.Deployment](t, objs, "Deployment", "gw-inbox-gateway")
	checkSecretsMounted(t, api, secret)
	if n := len(secretVolume(t, api).Items); n != len(secretVariables) {
		t.Errorf("%d secret files mounted, want all %d", n, len(secretVariables))
	}
}

// TestChartRefusesBadValues: values that would put a secret in the environment, override what the
// chart owns, or leave jobs without a worker stop the rendering with a message naming the key and
// never the value.
func TestChartRefusesBadValues(t *testing.T) {
	value := "fake-" + randomHex(t)
	cases := map[string]struct {
		overrides map[string]any
		want      string
	}{
		"secret in config":          {map[string]any{"config": map[string]any{"INBOXHUB_PASSWORD": value}}, "config.INBOXHUB_PASSWORD: a secret"},
		"secret file path config":   {map[string]any{"config": map[string]any{"TOKEN_ENCRYPTION_KEY_FILE": value}}, "config.TOKEN_ENCRYPTION_KEY_FILE: a secret"},
		"api keys file in config":   {map[string]any{"config": map[string]any{"GATEWAY_API_KEYS_FILE": value}}, "config.GATEWAY_API_KEYS_FILE: a secret"},
		"chart-owned variable":      {map[string]any{"config": map[string]any{"GATEWAY_SYNC_WORKERS": "3"}}, "config.GATEWAY_SYNC_WORKERS: set by the chart"},
		"admin address":             {map[string]any{"config": map[string]any{"GATEWAY_ADMIN_ADDR": "0.0.0.0:9999"}}, "config.GATEWAY_ADMIN_ADDR: set by the chart"},
		"unknown secret value":      {map[string]any{"secrets": map[string]any{"values": map[string]any{"INBOXHUB_PASWORD": value}}}, "secrets.values.INBOXHUB_PASWORD: not a secret"},
		"unknown existing key":      {map[string]any{"secrets": map[string]any{"existingSecret": "x", "existingSecretKeys": []any{"CRM_SECRET"}}}, "secrets.existingSecretKeys: CRM_SECRET is not a secret"},
		"workers without sync":      {map[string]any{"workers": map[string]any{"enabled": true, "syncWorkers": 0}}, "workers.syncWorkers: at least 1"},
		"workers without webhooks":  {map[string]any{"workers": map[string]any{"enabled": true, "webhookWorkers": 0}}, "workers.webhookWorkers: at least 1"},
		"workers without replicas":  {map[string]any{"workers": map[string]any{"enabled": true, "replicas": 0}}, "workers.replicas: at least 1"},
		"demo mode in a deployment": {map[string]any{"config": map[string]any{"GATEWAY_DEMO": "1"}}, "config.GATEWAY_DEMO: set by the chart"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, nil, tc.overrides)
			if err == nil {
				t.Fatal("rendered; want a refusal")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), value) {
				t.Error("the error repeats the secret value")
			}
		})
	}
}

// TestChartLint runs helm lint's rules (offline) over both value sets.
func TestChartLint(t *testing.T) {
	for _, f := range []string{"", filepath.Join(chartDir, "ci", "split-roles-values.yaml")} {
		vals := map[string]any{}
		if f != "" {
			v, err := chartutil.ReadValuesFile(f)
			if err != nil {
				t.Fatal(err)
			}
			vals = v.AsMap()
		}
		res := lint.AllWithKubeVersion(chartDir, vals, namespace, &chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"})
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("lint %q: %s", f, m)
			}
		}
	}
}

// checkPod asserts the pod hardening, probes, grace period and writable directories of a role.
func checkPod(t *testing.T, d *appsv1.Deployment, preStopSleep int64) {
	t.Helper()
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("%s: want one container, got %d (+%d init)", d.Name, len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatalf("%s: security contexts missing", d.Name)
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || (sc.RunAsUser != nil && *sc.RunAsUser == 0) {
		t.Errorf("%s: not forced non-root: pod %+v container %+v", d.Name, psc, sc)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccomp %+v, want RuntimeDefault", d.Name, psc.SeccompProfile)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: root filesystem writable", d.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || (sc.Privileged != nil && *sc.Privileged) {
		t.Errorf("%s: privilege escalation or privileged allowed", d.Name)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("%s: capabilities %+v, want drop ALL, add none", d.Name, sc.Capabilities)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted", d.Name)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: shares a host namespace", d.Name)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v, want cpu and memory requests and a memory limit", d.Name, c.Resources)
	}

	env := envOf(c)
	if env["GATEWAY_ADDR"] != ":8080" || env["GATEWAY_ADMIN_ADDR"] != ":9090" {
		t.Errorf("%s: GATEWAY_ADDR=%q GATEWAY_ADMIN_ADDR=%q", d.Name, env["GATEWAY_ADDR"], env["GATEWAY_ADMIN_ADDR"])
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 8080 || ports["admin"] != 9090 {
		t.Errorf("%s: ports %v", d.Name, ports)
	}
	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: %s probe is not an HTTP GET", d.Name, what)
			return
		}
		if p.HTTPGet.Path != path || ports[p.HTTPGet.Port.String()] != 8080 {
			t.Errorf("%s: %s probe GET %s on %s, want %s on :8080", d.Name, what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")

	// The bound of docs/operations.md "Stopping a replica": drain + shutdown + 13 s, after the preStop.
	bound := preStopSleep + seconds(t, env, "GATEWAY_DRAIN_DELAY") + seconds(t, env, "GATEWAY_SHUTDOWN_TIMEOUT") + 13
	if grace := pod.TerminationGracePeriodSeconds; grace == nil || *grace <= bound {
		t.Errorf("%s: terminationGracePeriodSeconds %s, want more than %d", d.Name, ptrString(grace), bound)
	}

	// Every directory the gateway writes is an emptyDir mount; the spool is not turned off.
	emptyDirs := map[string]bool{}
	for _, v := range pod.Volumes {
		if v.EmptyDir != nil {
			emptyDirs[v.Name] = true
		}
	}
	writable := func(path string) bool {
		for _, m := range c.VolumeMounts {
			if emptyDirs[m.Name] && !m.ReadOnly && (path == m.MountPath || strings.HasPrefix(path, m.MountPath+"/")) {
				return true
			}
		}
		return false
	}
	if spool := env["GATEWAY_WEBHOOK_SPOOL_DIR"]; !writable(spool) {
		t.Errorf("%s: GATEWAY_WEBHOOK_SPOOL_DIR=%q is not on a writable emptyDir", d.Name, spool)
	}
	if !writable("/tmp") {
		t.Errorf("%s: /tmp is not a writable emptyDir", d.Name)
	}
	if n, err := strconv.ParseInt(env["GATEWAY_WEBHOOK_SPOOL_MAX_BYTES"], 10, 64); err != nil || n <= 0 {
		t.Errorf("%s: GATEWAY_WEBHOOK_SPOOL_MAX_BYTES=%q", d.Name, env["GATEWAY_WEBHOOK_SPOOL_MAX_BYTES"])
	}
}

func secretVolume(t *testing.T, d *appsv1.Deployment) *corev1.SecretVolumeSource {
	t.Helper()
	var found *corev1.SecretVolumeSource
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			if found != nil {
				t.Fatalf("%s: more than one secret volume", d.Name)
			}
			found = v.Secret
		}
	}
	if found == nil {
		t.Fatalf("%s: no secret volume", d.Name)
	}
	return found
}

// checkSecretsMounted asserts that secrets reach the gateway only as files: no secret variable in
// the environment, no secretKeyRef or envFrom, and every *_FILE variable names a file of the
// read-only secret volume (which, when the chart makes the Secret, holds exactly those keys).
func checkSecretsMounted(t *testing.T, d *appsv1.Deployment, secret *corev1.Secret) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	if len(c.EnvFrom) != 0 {
		t.Errorf("%s: envFrom %+v", d.Name, c.EnvFrom)
	}
	vol := secretVolume(t, d)
	items := map[string]string{}
	for _, it := range vol.Items {
		items[it.Path] = it.Key
	}
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				mount = &c.VolumeMounts[i]
			}
		}
	}
	if mount == nil || !mount.ReadOnly || mount.MountPath != secretDir {
		t.Fatalf("%s: secret volume mount %+v, want read-only at %s", d.Name, mount, secretDir)
	}
	files := map[string]bool{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Errorf("%s: %s comes from valueFrom %+v", d.Name, e.Name, e.ValueFrom)
		}
		if slices.Contains(secretVariables, e.Name) {
			t.Errorf("%s: the secret %s is passed in the environment", d.Name, e.Name)
		}
		base, ok := strings.CutSuffix(e.Name, "_FILE")
		if !ok {
			continue
		}
		if !slices.Contains(secretVariables, base) {
			t.Errorf("%s: %s is not a file variable the gateway reads", d.Name, e.Name)
		}
		key, ok := items[strings.TrimPrefix(e.Value, secretDir+"/")]
		if !ok || filepath.Dir(e.Value) != secretDir || key != base {
			t.Errorf("%s: %s=%s is not the mounted key %s", d.Name, e.Name, e.Value, base)
		}
		files[base] = true
	}
	for _, k := range requiredSecrets {
		if !files[k] {
			t.Errorf("%s: %s_FILE not set", d.Name, k)
		}
	}
	if len(files) != len(items) {
		t.Errorf("%s: %d *_FILE variables for %d mounted files", d.Name, len(files), len(items))
	}
	if secret != nil {
		if vol.SecretName != secret.Name {
			t.Errorf("%s mounts Secret %q, the chart made %q", d.Name, vol.SecretName, secret.Name)
		}
		if len(secret.Data) != len(items) {
			t.Errorf("%s: mounts %d of the Secret's %d keys", d.Name, len(items), len(secret.Data))
		}
		for _, key := range items {
			if _, ok := secret.Data[key]; !ok {
				t.Errorf("%s mounts %s, which the Secret lacks", d.Name, key)
			}
		}
	}
}

func checkServices(t *testing.T, objs []object) {
	t.Helper()
	api := find[*appsv1.Deployment](t, objs, "Deployment", "gw-inbox-gateway")
	svc := find[*corev1.Service](t, objs, "Service", "gw-inbox-gateway")
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("public Service ports %+v, want only the http port", svc.Spec.Ports)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(api.Spec.Template.Labels)) {
		t.Errorf("public Service selector %v misses the API pods", svc.Spec.Selector)
	}
	metrics := find[*corev1.Service](t, objs, "Service", "gw-inbox-gateway-metrics")
	if len(metrics.Spec.Ports) != 1 || metrics.Spec.Ports[0].Port != 9090 || metrics.Spec.Ports[0].TargetPort.String() != "admin" {
		t.Errorf("metrics Service ports %+v", metrics.Spec.Ports)
	}
	if !labels.SelectorFromSet(metrics.Spec.Selector).Matches(labels.Set(api.Spec.Template.Labels)) {
		t.Errorf("metrics Service selector %v misses the API pods", metrics.Spec.Selector)
	}
}

// checkNetworkPolicy: the admin port only from the monitoring namespaces; the public port open
// (to anyone or to the configured peers) on API pods only.
func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, role string, apiFromAnyone bool) {
	t.Helper()
	if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != role {
		t.Errorf("%s selects %v, want the %s pods", np.Name, np.Spec.PodSelector.MatchLabels, role)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("%s policy types %v", np.Name, np.Spec.PolicyTypes)
	}
	seen := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) != 1 || rule.Ports[0].Port == nil {
			t.Errorf("%s: a rule without exactly one port: %+v", np.Name, rule)
			continue
		}
		port := rule.Ports[0].Port.String()
		seen[port] = true
		switch port {
		case "admin":
			if len(rule.From) != 1 || rule.From[0].NamespaceSelector == nil || len(rule.From[0].NamespaceSelector.MatchLabels) == 0 || rule.From[0].IPBlock != nil {
				t.Errorf("%s: admin port open beyond the monitoring namespaces: %+v", np.Name, rule.From)
			} else if rule.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
				t.Errorf("%s: admin port from %v", np.Name, rule.From[0].NamespaceSelector.MatchLabels)
			}
		case "http":
			if role != "api" {
				t.Errorf("%s: the public port is open on %s pods", np.Name, role)
			}
			if apiFromAnyone != (len(rule.From) == 0) {
				t.Errorf("%s: public port from %+v", np.Name, rule.From)
			}
		default:
			t.Errorf("%s: unexpected port %s", np.Name, port)
		}
	}
	if !seen["admin"] || seen["http"] != (role == "api") {
		t.Errorf("%s: ports covered %v", np.Name, seen)
	}
}

func checkAutoscaling(t *testing.T, objs []object, api *appsv1.Deployment) {
	t.Helper()
	hpa := find[*autoscalingv2.HorizontalPodAutoscaler](t, objs, "HorizontalPodAutoscaler", "gw-inbox-gateway")
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != api.Name {
		t.Errorf("HPA scales %+v, want the API Deployment", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
		t.Errorf("HPA replicas %s..%d", ptrString(hpa.Spec.MinReplicas), hpa.Spec.MaxReplicas)
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
		t.Errorf("HPA metrics %+v, want CPU", hpa.Spec.Metrics)
	}
}

func checkPDB(t *testing.T, pdb *policyv1.PodDisruptionBudget, d *appsv1.Deployment) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PDB %s misses the pods of %s", pdb.Name, d.Name)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB %s maxUnavailable %v", pdb.Name, pdb.Spec.MaxUnavailable)
	}
}

func checkServiceAccount(t *testing.T, objs []object, api *appsv1.Deployment) {
	t.Helper()
	sa := find[*corev1.ServiceAccount](t, objs, "ServiceAccount", api.Spec.Template.Spec.ServiceAccountName)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s mounts its token", sa.Name)
	}
}

// ptrString prints a pointer's value, or nil.
func ptrString[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
