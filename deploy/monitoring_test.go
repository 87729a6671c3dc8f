package deploy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const (
	// metricsUsedFile lists every metric the alerts and the dashboard read; a test of the gateway
	// module (internal/app) checks that a running replica exports each of them.
	metricsUsedFile = chartDir + "/metrics-used.txt"
	// operationsDoc holds the runbooks the alerts link to.
	operationsDoc = "../docs/operations.md"
)

// TestChartMonitoring renders the dashboard and the alert rules, decodes both strictly, parses
// the rules with Prometheus's own rule parser and every expression (rules and panels) as PromQL,
// checks each alert's labels, annotations and runbook link (an anchor of docs/operations.md),
// and that metrics-used.txt lists exactly the metrics they read (go test -update rewrites it).
func TestChartMonitoring(t *testing.T) {
	files, err := render(t, nil, map[string]any{
		"prometheusRule":   map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"grafanaDashboard": map[string]any{"enabled": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := decode(t, files)
	rule := find[*monitoringv1.PrometheusRule](t, objs, "PrometheusRule", release+"-inbox-gateway")
	dash := find[*corev1.ConfigMap](t, objs, "ConfigMap", release+"-inbox-gateway-dashboard")
	if rule.Labels["release"] != "kube-prometheus-stack" || dash.Labels["grafana_dashboard"] != "1" {
		t.Errorf("selector labels: rule %v, dashboard %v", rule.Labels, dash.Labels)
	}

	used := map[string]bool{}
	alerts := checkRules(t, rule, used)
	checkDashboard(t, dash, used)
	for _, want := range []string{"UpstreamAuthFailed", "UpstreamTokenRefreshFailing", "UpstreamLoginsNearLimit",
		"UpstreamQuotaExhausted", "UpstreamBreakerOpen", "EventsDeadLettered", "WebhookLag", "WebhookOutboxStalled",
		"GatewayErrorBudgetBurnFast", "GatewayErrorBudgetBurnSlow"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}

	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	slices.Sort(names)
	want := "# Metrics read by the alert rules and the Grafana dashboard of this chart, written by\n" +
		"# `go test ./deploy/ -update` (TestChartMonitoring); TestMonitoringMetricsExported in the\n" +
		"# gateway module checks that a running replica exports each of them.\n" + strings.Join(names, "\n") + "\n"
	if *update {
		if err := os.WriteFile(metricsUsedFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(metricsUsedFile)
	if err != nil || string(got) != want {
		t.Errorf("%s is not the list of metrics the rules and the dashboard read (run go test ./deploy/ -update):\n%s", metricsUsedFile, want)
	}
}

// checkRules checks the PrometheusRule and adds the metrics its expressions read to used; it
// returns the alerts' names.
func checkRules(t *testing.T, rule *monitoringv1.PrometheusRule, used map[string]bool) (alerts []string) {
	t.Helper()
	groups, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	parsed, errs := rulefmt.Parse(groups, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, e := range errs {
		t.Errorf("the Prometheus rule parser refuses the rules: %v", e)
	}
	if parsed == nil {
		t.Fatal("no rule groups parsed")
	}
	anchors := headingAnchors(t)
	for _, g := range parsed.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			metricsOf(t, r.Alert, r.Expr, used)
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description", r.Alert)
			}
			base, anchor, ok := strings.Cut(r.Annotations["runbook_url"], "#")
			if !ok || base != "docs/operations.md" || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q is not a heading of docs/operations.md", r.Alert, r.Annotations["runbook_url"])
			}
			if !strings.Contains(strings.ToLower(anchor), strings.ToLower(r.Alert)) &&
				!strings.HasPrefix(strings.ToLower(r.Alert), strings.Split(anchor, "-")[0]) {
				t.Errorf("%s: its runbook %q does not name it", r.Alert, anchor)
			}
		}
	}
	return alerts
}

// checkDashboard decodes the dashboard JSON, strictly into the fields it must have, and adds the
// metrics its panels read to used.
func checkDashboard(t *testing.T, cm *corev1.ConfigMap, used map[string]bool) {
	t.Helper()
	var dash struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query string `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["inbox-gateway.json"]), &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard %q %q with %d panels", dash.UID, dash.Title, len(dash.Panels))
	}
	// Grafana's variables, replaced by values of their kind before parsing.
	vars := strings.NewReplacer("$__rate_interval", "5m", "$namespace", "inbox")
	for _, v := range dash.Templating.List {
		if strings.HasPrefix(v.Query, "label_values(") {
			metric := strings.TrimSpace(strings.Split(strings.TrimPrefix(v.Query, "label_values("), ",")[0])
			metricsOf(t, "variable "+v.Name, metric, used)
		}
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			metricsOf(t, "panel "+p.Title, vars.Replace(tg.Expr), used)
		}
	}
}

// metricsOf parses expr as PromQL and adds the metric names it selects to used.
func metricsOf(t *testing.T, where, expr string, used map[string]bool) {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: not PromQL: %v\n%s", where, err, expr)
		return
	}
	n := 0
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("%s: a selector without a metric name: %s", where, vs)
			}
			used[vs.Name] = true
			n++
		}
		return nil
	})
	if n == 0 {
		t.Errorf("%s: reads no metric: %s", where, expr)
	}
}

// headingAnchors are the anchors GitHub gives the headings of docs/operations.md: lower case,
// punctuation other than hyphens dropped, spaces made hyphens.
func headingAnchors(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
	out := map[string]bool{}
	for line := range bytes.Lines(doc) {
		l := strings.TrimSpace(string(line))
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		out[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
	}
	return out
}
