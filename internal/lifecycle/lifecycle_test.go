package lifecycle

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imsflow/imsflow/pkg/events"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func TestCheck(t *testing.T) {
	ok := Declaration{Regions: []Region{{Region: "ap-southeast-3", AgencyName: "ims_admin_agency"}}, Tags: map[string]string{"channel": "stable"}}
	if err := ok.Check(); err != nil {
		t.Fatalf("a good declaration: %v", err)
	}
	many := map[string]string{}
	for i := range 9 {
		many[fmt.Sprint("k", i)] = "v"
	}
	for _, c := range []struct {
		name string
		d    Declaration
		want string
	}{
		{"empty copy", Declaration{Copy: &Copy{}}, "give cmk_id"},
		{"copy both ways", Declaration{Copy: &Copy{CMKID: "k", Plain: true}}, "contradict"},
		{"re-key then share", Declaration{Copy: &Copy{CMKID: "k"}, Share: Members{Projects: []string{"p"}}}, "re-keyed copy is encrypted"},
		{"bad region", Declaration{Regions: []Region{{Region: "Mars", AgencyName: "a"}}}, `region "Mars"`},
		{"region twice", Declaration{Regions: []Region{{Region: "ap-southeast-3", AgencyName: "a"}, {Region: "ap-southeast-3", AgencyName: "a"}}}, "listed twice"},
		{"no agency", Declaration{Regions: []Region{{Region: "ap-southeast-3"}}}, "agency_name is required"},
		{"fallback not yet", Declaration{Fallback: FallbackExportImport, Regions: []Region{{Region: "ap-southeast-3", AgencyName: "a"}}}, "not available yet"},
		{"bad fallback", Declaration{Fallback: "teleport"}, `fallback "teleport"`},
		{"member twice", Declaration{Share: Members{Projects: []string{"p", "p"}}}, "listed twice"},
		{"too many tags", Declaration{Tags: many}, "9 tags"},
		{"tag key", Declaration{Tags: map[string]string{"a b": "v"}}, `key "a b"`},
		{"tag value", Declaration{Tags: map[string]string{"k": strings.Repeat("v", 44)}}, "44 characters"},
		{"keep_last", Declaration{KeepLast: -1}, "negative"},
		{"source", Declaration{SourceObject: "shred"}, `source_object "shred"`},
		{"family", Declaration{Family: "a family"}, `tag value "a family"`},
		{"own tag", Declaration{Tags: map[string]string{FamilyTag: "x"}}, "imsflow's own tag"},
		{"tag key dot", Declaration{Tags: map[string]string{"a.b": "v"}}, `tag key "a.b"`},
	} {
		err := c.d.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func names(r *Record) []string { return r.legNames() }

func TestPlan(t *testing.T) {
	d := Declaration{Family: "web", Copy: &Copy{Plain: true}, Share: Members{Projects: []string{"p-here"}},
		Regions: []Region{
			{Region: "ap-southeast-3", AgencyName: "a", Share: Members{Projects: []string{"p-there"}}},
			{Region: "eu-west-101", AgencyName: "a"},
		},
		Tags: map[string]string{"channel": "stable"}, KeepLast: 2, SourceObject: SourceDelete}
	r := Plan(Start{ID: "l.1", Rule: "web-rule", Declaration: d, SourceRegion: "cn-north-4", Image: Image{ID: "img", Encrypted: true, SizeGB: 40}, At: t0,
		Source: sourceOf("images", "web/a.qcow2")})
	want := []string{"copy", "share:cn-north-4", "tag:cn-north-4", "replicate:ap-southeast-3", "share:ap-southeast-3", "tag:ap-southeast-3",
		"replicate:eu-west-101", "tag:eu-west-101", "latest", "retain:cn-north-4", "retain:ap-southeast-3", "retain:eu-west-101", "source"}
	if got := names(r); !slices.Equal(got, want) {
		t.Fatalf("legs = %v\nwant   %v", got, want)
	}
	if got := r.Ready(); !slices.Equal(got, []string{"copy"}) {
		t.Errorf("ready = %v, want the copy first", got)
	}
	if r.Leg("latest").After == nil || len(r.Leg("latest").After) != 8 {
		t.Errorf("latest comes after %v, want the 8 distribution legs", r.Leg("latest").After)
	}
}

func TestPlanRefusesNamingTheRule(t *testing.T) {
	d := Declaration{Share: Members{Projects: []string{"p"}}, Regions: []Region{{Region: "ap-southeast-3", AgencyName: "a"}}}
	for _, c := range []struct {
		name  string
		image Image
		legs  map[string]string // leg: words its reason has
	}{
		{"encrypted", Image{Encrypted: true, SizeGB: 40}, map[string]string{"share:cn-north-4": `"plain": true`, "replicate:ap-southeast-3": `"plain": true`}},
		{"iso", Image{ISO: true, SizeGB: 4}, map[string]string{"replicate:ap-southeast-3": "ISO"}},
		{"large", Image{SizeGB: 200}, map[string]string{"replicate:ap-southeast-3": "at most 128 GB"}},
	} {
		r := Plan(Start{ID: "l", Rule: "rule-x", Declaration: d, SourceRegion: "cn-north-4", Image: c.image, At: t0})
		for leg, words := range c.legs {
			l := r.Leg(leg)
			if l.State != LegRefused || !strings.Contains(l.Reason, "rule rule-x") || !strings.Contains(l.Reason, words) {
				t.Errorf("%s: %s is %s (%q), want refused naming rule-x and saying %q", c.name, leg, l.State, l.Reason, words)
			}
		}
		if c.name == "iso" || c.name == "large" {
			if l := r.Leg("tag:ap-southeast-3"); l.State != LegBlocked {
				t.Errorf("%s: the refused copy's tag leg is %s, want blocked", c.name, l.State)
			}
		}
	}
}

// run settles every ready leg as outcome says (default succeeded) until
// nothing is ready.
func run(t *testing.T, r *Record, outcome map[string]string) {
	t.Helper()
	for ready := r.Ready(); len(ready) > 0; ready = r.Ready() {
		for _, name := range ready {
			l := r.Leg(name)
			l.State = LegRunning
			state := outcome[name]
			if state == "" {
				state = LegSucceeded
			}
			if !r.Settle(name, l.Attempt, state, "img-"+name, "", "", t0) {
				t.Fatalf("settle %s refused", name)
			}
		}
	}
}

func TestRunRetryOneLeg(t *testing.T) {
	d := Declaration{Regions: []Region{{Region: "ap-southeast-3", AgencyName: "a"}, {Region: "eu-west-101", AgencyName: "a"}}, KeepLast: 1}
	r := Plan(Start{ID: "l", Rule: "r", Declaration: d, SourceRegion: "cn-north-4", Image: Image{ID: "img", SizeGB: 40}, At: t0})
	run(t, r, map[string]string{"replicate:eu-west-101": LegFailed})
	if r.State != Failed || r.Generation != 0 {
		t.Fatalf("state %s generation %d, want failed 0", r.State, r.Generation)
	}
	for name, want := range map[string]string{"replicate:ap-southeast-3": LegSucceeded, "tag:ap-southeast-3": LegSucceeded,
		"tag:eu-west-101": LegBlocked, "latest": LegBlocked, "retain:cn-north-4": LegBlocked} {
		if got := r.Leg(name).State; got != want {
			t.Errorf("%s is %s, want %s", name, got, want)
		}
	}
	if r.ImageIn("ap-southeast-3") != "img-replicate:ap-southeast-3" || r.ImageIn("eu-west-101") != "" || r.ImageIn("cn-north-4") != "img" {
		t.Errorf("images: %q %q %q", r.ImageIn("cn-north-4"), r.ImageIn("ap-southeast-3"), r.ImageIn("eu-west-101"))
	}

	if err := r.Retry("tag:ap-southeast-3", t0); err == nil {
		t.Error("a succeeded leg was retried")
	}
	if err := r.Retry("replicate:mars", t0); err == nil || !strings.Contains(err.Error(), "legs: ") {
		t.Errorf("unknown leg: %v", err)
	}
	if err := r.Retry("replicate:eu-west-101", t0); err != nil {
		t.Fatal(err)
	}
	if r.State != Running || r.Generation != 1 || r.Leg("replicate:eu-west-101").Attempt != 2 {
		t.Fatalf("after retry: %s gen %d attempt %d", r.State, r.Generation, r.Leg("replicate:eu-west-101").Attempt)
	}
	if got := r.Ready(); !slices.Equal(got, []string{"replicate:eu-west-101"}) {
		t.Errorf("ready after the retry = %v, want the one leg alone", got)
	}
	// An answer about the first run changes nothing.
	r.Leg("replicate:eu-west-101").State = LegRunning
	if r.Settle("replicate:eu-west-101", 1, LegFailed, "", "late", "", t0) {
		t.Error("an answer about the replaced run was taken")
	}
	r.Leg("replicate:eu-west-101").State = LegPending
	run(t, r, nil)
	if r.State != Succeeded {
		t.Fatalf("after the retried leg succeeded: %s; legs %+v", r.State, r.Legs)
	}
	for _, l := range r.Legs {
		if l.State != LegSucceeded {
			t.Errorf("%s is %s", l.Name, l.State)
		}
	}
}

func TestRecordJSONRoundTrip(t *testing.T) {
	d := Declaration{Regions: []Region{{Region: "ap-southeast-3", AgencyName: "a"}}, Tags: map[string]string{"channel": "beta"}}
	r := Plan(Start{ID: "l", Rule: "r", Declaration: d, SourceRegion: "cn-north-4", Image: Image{ID: "img"}, At: t0})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(&back)
	if string(b) != string(b2) {
		t.Errorf("round trip changed the record:\n%s\n%s", b, b2)
	}
}

func sourceOf(bucket, key string) *events.Source { return &events.Source{Bucket: bucket, Key: key} }

func TestWriteTree(t *testing.T) {
	d := Declaration{Copy: &Copy{Plain: true}, Regions: []Region{{Region: "ap-southeast-3", AgencyName: "a"}}, KeepLast: 1}
	r := Plan(Start{ID: "l1", Rule: "web", Declaration: d, SourceRegion: "cn-north-4", Image: Image{ID: "img", Name: "web-1", Encrypted: true}, At: t0,
		Source: sourceOf("images", "web/1.qcow2")})
	run(t, r, map[string]string{"replicate:ap-southeast-3": LegFailed})
	var b strings.Builder
	WriteTree(&b, r)
	got := b.String()
	for _, want := range []string{
		"lifecycle l1  rule web  family web  failed\n",
		"imported img (web-1) in cn-north-4 from images:web/1.qcow2\n",
		"├─ copy ", "│  ├─ tag:cn-north-4 ", "│  └─ replicate:ap-southeast-3 ", "failed",
		"│     └─ tag:ap-southeast-3 ", "blocked  replicate:ap-southeast-3 failed",
		"└─ latest ", "   ├─ retain:cn-north-4 ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the tree lacks %q:\n%s", want, got)
		}
	}
}
