package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// terminalWidth is the width the demo's default output keeps within.
const terminalWidth = 120

// noteIndent opens the lines of a row's note.
const noteIndent = "    "

// writeTable writes rows under header in columns two spaces apart, without
// trailing blanks, each row followed by its note (notes[i], when there is
// one) on lines of its own, indented. With width > 0 no line is longer:
// notes are wrapped at spaces, and the last column gets what the others
// leave of width; when that is under 16 columns, the widest of the others
// are narrowed first. A cell wider than its column is cut short with "…".
// With width 0 nothing is wrapped or cut. Widths are counted in runes,
// which is the display width of the text the demo prints (no wide or
// combining characters).
func writeTable(w io.Writer, header []string, rows [][]string, notes []string, width int) {
	const gap = 2
	n := len(header)
	widths := make([]int, n)
	for _, r := range append([][]string{header}, rows...) {
		for i := 0; i < n && i < len(r); i++ {
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	last := -1 // no limit
	if width > 0 {
		const minLast, minOther = 16, 4
		used := 0
		for _, c := range widths[:n-1] {
			used += c + gap
		}
		for used > width-minLast {
			widest := 0
			for i := range n - 1 {
				if widths[i] > widths[widest] {
					widest = i
				}
			}
			if widths[widest] <= minOther {
				break
			}
			widths[widest]--
			used--
		}
		last = max(width-used, minLast)
	}
	var b strings.Builder
	for k, r := range append([][]string{header}, rows...) {
		b.Reset()
		for i := range n {
			cell := ""
			if i < len(r) {
				cell = r[i]
			}
			if i == n-1 {
				if last >= 0 {
					cell = cut(cell, last)
				}
				b.WriteString(cell)
				break
			}
			cell = cut(cell, widths[i])
			b.WriteString(cell)
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+gap))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if k > 0 && k-1 < len(notes) && notes[k-1] != "" {
			lineWidth := 0
			if width > 0 {
				lineWidth = width - len(noteIndent)
			}
			for _, line := range wrap(notes[k-1], lineWidth) {
				fmt.Fprintln(w, noteIndent+line)
			}
		}
	}
}

// wrap breaks s into lines of at most width runes at spaces, a word
// longer than a line cut where the line ends; width 0 is one line.
func wrap(s string, width int) []string {
	words := strings.Fields(s)
	if width <= 0 {
		return []string{strings.Join(words, " ")}
	}
	var lines []string
	var line []rune
	for _, word := range words {
		r := []rune(word)
		switch {
		case len(line) == 0:
		case len(line)+1+len(r) <= width:
			line = append(line, ' ')
		default:
			lines, line = append(lines, string(line)), nil
		}
		for len(line)+len(r) > width {
			k := width - len(line)
			lines, line, r = append(lines, string(append(line, r[:k]...))), nil, r[k:]
		}
		line = append(line, r...)
	}
	if len(line) > 0 || len(lines) == 0 {
		lines = append(lines, string(line))
	}
	return lines
}

// cut shortens s to at most n runes, ending it with "…" when it was
// longer.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	return strings.TrimRight(string(r[:n-1]), " ") + "…"
}
