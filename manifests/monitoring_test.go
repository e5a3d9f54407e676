package manifests

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/imsflow/imsflow/internal/functions"
)

// grafanaVariables are Grafana's built-in interval variables and what to
// put in their place so that the query parses as PromQL.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// queryChecker holds every query to the metrics that exist.
type queryChecker struct {
	known     map[string]bool // imsflow's metrics, from the code
	consumers map[string]bool // the functions' durable consumers
	streams   map[string]bool // their streams
}

func newQueryChecker() *queryChecker {
	q := &queryChecker{known: map[string]bool{}, consumers: map[string]bool{}, streams: map[string]bool{}}
	for _, n := range functions.MetricNames() {
		q.known[n] = true
	}
	for _, fn := range functions.Names {
		for _, c := range functions.Consumers(fn) {
			q.consumers[c.Config.Durable], q.streams[c.Stream] = true, true
		}
	}
	return q
}

// check parses expr and reports every metric it selects that neither the
// code nor NATS's exporter exports, and every exporter selector that does
// not pick the consumer's leader or names a consumer or stream imsflow
// does not have.
func (q *queryChecker) check(where, expr string) (problems []string) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVariables.Replace(expr))
	if err != nil {
		return []string{fmt.Sprintf("%s: %q does not parse: %v", where, expr, err)}
	}
	selectors := 0
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors++
		name := vs.Name
		switch {
		case q.known[name], q.known[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")]:
		case otherMetrics[name]:
		case natsExporterMetrics[name]:
			problems = append(problems, q.checkExporter(where, name, vs.LabelMatchers)...)
		default:
			problems = append(problems, fmt.Sprintf("%s: %s is no metric imsflow exports (functions.MetricNames) nor NATS's exporter", where, name))
		}
		return nil
	})
	if selectors == 0 {
		problems = append(problems, fmt.Sprintf("%s: %q selects no metric", where, expr))
	}
	return problems
}

func (q *queryChecker) checkExporter(where, name string, ms []*labels.Matcher) (problems []string) {
	leader := false
	for _, m := range ms {
		switch m.Name {
		case "is_consumer_leader", "is_stream_leader":
			leader = leader || m.Type == labels.MatchEqual && m.Value == "true"
		case "consumer_name":
			problems = append(problems, names(where, name, m, q.consumers)...)
		case "stream_name":
			problems = append(problems, names(where, name, m, q.streams)...)
		}
	}
	if !leader {
		problems = append(problems, fmt.Sprintf(`%s: %s without is_consumer_leader="true" (or is_stream_leader) counts every replica's copy`, where, name))
	}
	return problems
}

// names checks that a matcher's value, a name or a regexp alternation of
// names, names only what the code has.
func names(where, metric string, m *labels.Matcher, have map[string]bool) (problems []string) {
	if m.Type != labels.MatchEqual && m.Type != labels.MatchRegexp {
		return nil
	}
	for n := range strings.SplitSeq(m.Value, "|") {
		if !have[n] {
			problems = append(problems, fmt.Sprintf("%s: %s{%s} names %q, which imsflow's code does not (have: %v)", where, metric, m.Name, n, keys(have)))
		}
	}
	return problems
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestAlerts: the alert rules cover what the issue asks, each with a
// severity and a summary, and query only metrics that exist.
func TestAlerts(t *testing.T) {
	b := render(t, "prod", "nats/values-prod.yaml")
	q := newQueryChecker()
	want := []string{"ImsflowDeadLetters", "ImsflowJobsStalled", "ImsflowLifecycleFailed", "ImsflowIMSThrottled", "ImsflowNoCompletions", "ImsflowConsumerLagGrowing"}
	var have []string
	for _, r := range b.rules {
		for _, g := range r.Spec.Groups {
			for _, rule := range g.Rules {
				where := "alert " + rule.Alert
				if rule.Alert == "" {
					where = "record " + rule.Record
				}
				have = append(have, rule.Alert)
				report(t, q.check(where, rule.Expr.String()))
				if rule.Alert != "" && (rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" || rule.Annotations["description"] == "") {
					t.Errorf("%s: want a severity label, a summary and a description", where)
				}
			}
		}
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			t.Errorf("no alert %s (have %v)", w, have)
		}
	}
	// The scrape reaches every function on the port its alerts' metrics
	// come from.
	if len(b.podMonitors) == 0 {
		t.Error("prod: no PodMonitor scrapes the functions")
	}
	for name, pm := range b.podMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		for fn, fc := range b.functionContainers(t) {
			if !sel.Matches(k8slabels.Set(fc.deployment.Spec.Template.Labels)) {
				t.Errorf("PodMonitor %s does not select the %s function", name, fn)
			}
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if ep.Port == nil {
					t.Errorf("PodMonitor %s: an endpoint without a port", name)
				} else if _, ok := port(fc.container, *ep.Port); !ok {
					t.Errorf("PodMonitor %s: port %s is not the %s function's", name, *ep.Port, fn)
				}
			}
		}
	}
}

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// TestDashboard: the dashboard loads, its data source is a variable (so
// that provisioning works as well as an import), its panel IDs are
// unique, and every query parses and names metrics that exist.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard.json: no uid or title")
	}
	dsVar := ""
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("dashboard.json: no data source variable")
	}
	q := newQueryChecker()
	ids := map[int]bool{}
	queries := 0
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsVar {
				t.Errorf("panel %q: data source %+v, want the variable %s", p.Title, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				report(t, q.check("panel "+p.Title, tg.Expr))
			}
		}
	}
	walk(d.Panels)
	if queries < 10 {
		t.Errorf("dashboard.json: %d queries", queries)
	}
}

// TestQueryChecker: the checker itself fails what it should.
func TestQueryChecker(t *testing.T) {
	q := newQueryChecker()
	for _, bad := range []string{
		`rate(imsflow_no_such_metric_total[5m])`,
		`nats_consumer_num_pending{consumer_name="import"}`,
		`nats_consumer_num_pending{is_consumer_leader="true", consumer_name=~"import|exporter"}`,
		`sum(rate(imsflow_messages_total[5m]`,
	} {
		if len(q.check("test", bad)) == 0 {
			t.Errorf("%q passed", bad)
		}
	}
	report(t, q.check("test", `histogram_quantile(0.9, sum by (le) (rate(imsflow_ims_request_duration_seconds_bucket[$__rate_interval])))`))
	report(t, q.check("test", `max(nats_consumer_num_pending{is_consumer_leader="true", stream_name="IMSFLOW_IN", consumer_name="import"})`))
}

func report(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
}
