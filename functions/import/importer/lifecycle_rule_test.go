package importer

import (
	"strings"
	"testing"
	"time"

	"github.com/imsflow/imsflow/internal/ledger"
	"github.com/imsflow/imsflow/pkg/events"
)

// TestRuleLifecycle: a rule's lifecycle is read with the rules file and
// checked at load, a refusal naming the rule; the hand-off names the rule
// that imported the image.
func TestRuleLifecycle(t *testing.T) {
	rs, err := ParseRules([]byte(`{"rules":[{"name":"web","bucket":"images","prefix":"web/",
		"lifecycle":{"family":"web-base","regions":[{"region":"ap-southeast-3","agency_name":"ims_admin_agency"}],"tags":{"channel":"stable"},"keep_last":3}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := rs.Rules[0].Lifecycle
	if !d.Active() || d.Family != "web-base" || d.Regions[0].AgencyName != "ims_admin_agency" || d.KeepLast != 3 {
		t.Errorf("lifecycle read as %+v", d)
	}
	for _, c := range []struct{ rules, want string }{
		{`{"rules":[{"name":"web","prefix":"web/","lifecycle":{"regions":[{"region":"ap-southeast-3"}]}}]}`, "rule 0 (web): lifecycle: regions[0] (ap-southeast-3): agency_name is required"},
		{`{"rules":[{"bucket":"images","prefix":"db/","lifecycle":{"keep_last":-2}}]}`, "rule 0 (images/db/): lifecycle: keep_last -2"},
		{`{"rules":[{"prefix":"x/","lifecycle":{"replicas":2}}]}`, `unknown field "replicas"`},
		{`{"rules":[{"name":"a","prefix":"x/"},{"name":"a","prefix":"y/"}]}`, `name "a" is also rule 0's`},
	} {
		if _, err := ParseRules([]byte(c.rules)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.rules, err, c.want)
		}
	}

	cfg := routeConfig{Rules: rs}
	p := route(events.ObjectCreated{Bucket: "images", Key: "web/base.qcow2", Size: 1 << 30, ETag: "e"}, cfg)
	h := (&importer{now: time.Now}).handoff(p, "job", "", "", ledger.Slot{})
	if h.Rule != "web" {
		t.Errorf("hand-off rule = %q, want web", h.Rule)
	}
	p = route(events.ObjectCreated{Bucket: "other", Key: "a.qcow2", Size: 1 << 30, ETag: "e"}, cfg)
	if h := (&importer{now: time.Now}).handoff(p, "job", "", "", ledger.Slot{}); h.Rule != "*/" {
		t.Errorf("the default rule's label = %q, want */", h.Rule)
	}
}
