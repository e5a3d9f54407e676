package lifecycle

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// WriteTree writes the lifecycle as a tree of legs: a leg that comes
// after exactly one other hangs under it; the rest (the first legs, and
// latest, which waits for all) hang at the top.
func WriteTree(w io.Writer, r *Record) {
	fmt.Fprintf(w, "lifecycle %s  rule %s  family %s  %s", r.ID, r.Rule, r.Family, r.State)
	if r.Generation > 0 {
		fmt.Fprintf(w, " (generation %d)", r.Generation)
	}
	fmt.Fprintf(w, "\n  imported %s (%s) in %s", r.ImageID, r.ImageName, r.SourceRegion)
	if r.Source != nil {
		fmt.Fprintf(w, " from %s:%s", r.Source.Bucket, r.Source.Key)
	}
	fmt.Fprintln(w)
	children := map[string][]Leg{}
	var top []Leg
	for _, l := range r.Legs {
		if len(l.After) == 1 {
			children[l.After[0]] = append(children[l.After[0]], l)
		} else {
			top = append(top, l)
		}
	}
	width := 0
	for _, l := range r.Legs {
		width = max(width, len(l.Name))
	}
	var walk func(legs []Leg, indent string)
	walk = func(legs []Leg, indent string) {
		for i, l := range legs {
			branch, next := "├─ ", "│  "
			if i == len(legs)-1 {
				branch, next = "└─ ", "   "
			}
			pad := strings.Repeat(" ", max(2, width+8-utf8.RuneCountInString(indent)-len(l.Name)))
			fmt.Fprintf(w, "  %s%s%s%s%s%s\n", indent, branch, l.Name, pad, l.State, legDetail(l))
			walk(children[l.Name], indent+next)
		}
	}
	walk(top, "")
}

func legDetail(l Leg) string {
	var parts []string
	if l.Attempt > 1 {
		parts = append(parts, fmt.Sprintf("attempt %d", l.Attempt))
	}
	if l.ImageID != "" && (l.Kind == KindCopy || l.Kind == KindReplicate) {
		parts = append(parts, "image "+l.ImageID)
	}
	if l.JobID != "" && l.State == LegRunning {
		parts = append(parts, "job "+l.JobID)
	}
	if len(l.Removed) > 0 {
		parts = append(parts, fmt.Sprintf("removed %v", l.Removed))
	}
	if l.Reason != "" {
		parts = append(parts, l.Reason)
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, "; ")
}
