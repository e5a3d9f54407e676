package lifecycle

import (
	"fmt"
	"time"

	"github.com/imsflow/imsflow/pkg/events"
)

// Image is what a plan needs to know of the imported image.
type Image struct {
	ID, Name  string
	Encrypted bool
	ISO       bool
	// SizeGB is the image's size (its min_disk when nothing better is known).
	SizeGB int
}

// Start is what a lifecycle starts from: the import that succeeded.
type Start struct {
	ID           string // the lifecycle's key
	Rule         string // the rule's label
	Declaration  Declaration
	SourceRegion string
	Image        Image
	Source       *events.Source
	BatchID      string
	At           time.Time
}

// Plan returns a new lifecycle's record: its legs in the order they run,
// each after the legs whose result it needs. A leg that cannot work as
// declared is refused at once with the reason, naming the rule.
//
//	copy                          in-region copy (re-key or plain), when declared
//	replicate:<region>            after copy
//	share:<region>, tag:<region>  after the region's image exists
//	latest                        after every leg above
//	retain:<region>, source       after latest
func Plan(s Start) *Record {
	d := s.Declaration
	r := &Record{ID: s.ID, Rule: s.Rule, Family: d.Family, Declaration: d, Source: s.Source, SourceRegion: s.SourceRegion,
		ImageID: s.Image.ID, ImageName: s.Image.Name, State: Running, BatchID: s.BatchID, CreatedAt: s.At.UTC(), UpdatedAt: s.At.UTC()}
	if r.Family == "" {
		r.Family = s.Rule
	}
	add := func(kind, region string, after ...string) *Leg {
		name := legName(kind, region)
		r.Legs = append(r.Legs, Leg{Name: name, Kind: kind, Region: region, After: after, State: LegPending, Attempt: 1})
		return &r.Legs[len(r.Legs)-1]
	}
	refuse := func(l *Leg, why string) {
		l.State, l.Reason, l.FinishedAt = LegRefused, fmt.Sprintf("rule %s: %s", s.Rule, why), s.At.UTC()
	}

	var base []string // what the source region's image waits for
	encrypted := s.Image.Encrypted
	if d.Copy != nil {
		add(KindCopy, "")
		base = []string{KindCopy}
		encrypted = d.Copy.CMKID != ""
	}
	var all []string
	here := s.SourceRegion
	if !d.Share.Empty() {
		l := add(KindShare, here, base...)
		if encrypted {
			refuse(l, `the image is encrypted and IMS shares only plain images: add "copy": {"plain": true} to the lifecycle`)
		}
		all = append(all, l.Name)
	}
	all = append(all, add(KindTag, here, base...).Name)
	for _, reg := range d.Regions {
		rep := add(KindReplicate, reg.Region, base...)
		all = append(all, rep.Name)
		switch {
		case encrypted:
			refuse(rep, `the image is encrypted and IMS copies across regions only plain images: add "copy": {"plain": true} to the lifecycle`)
		case s.Image.ISO:
			refuse(rep, "IMS does not copy ISO images across regions: export the image, copy the file to a bucket in "+reg.Region+" and import it there")
		case s.Image.SizeGB > MaxCopyGB:
			refuse(rep, fmt.Sprintf("the image is %d GB and IMS copies across regions at most %d GB: export it, copy the file to a bucket in %s and import it there", s.Image.SizeGB, MaxCopyGB, reg.Region))
		}
		if !reg.Share.Empty() {
			all = append(all, add(KindShare, reg.Region, rep.Name).Name)
		}
		all = append(all, add(KindTag, reg.Region, rep.Name).Name)
	}
	if d.Copy != nil {
		all = append(all, KindCopy)
	}
	add(KindLatest, "", all...)
	if d.KeepLast > 0 {
		for _, reg := range r.Regions() {
			add(KindRetain, reg, KindLatest)
		}
	}
	if d.SourceObject == SourceDelete && s.Source != nil {
		add(KindSource, "", KindLatest)
	}
	r.propagate()
	return r
}
