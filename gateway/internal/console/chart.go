package console

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluice-mail/sluice/gateway/internal/activity"
)

// chart is a stacked bar chart of transactions by outcome, drawn as SVG
// by the template from these numbers. Each outcome has its own colour and
// its own hatching, the legend names them, and each bar's <title> gives
// its numbers in words: it reads without colour, and with a screen reader.
type chart struct {
	Title  string
	ID     string
	Width  int
	Height int
	// Max is the count the top of the plot stands for.
	Max    int
	Total  int
	Bars   []bar
	Legend []legendEntry
}

type bar struct {
	X, Width int
	Title    string // "2026-12-06 13:00 UTC: 5 (3 forwarded, 2 refused)"
	Label    string // under the bar, on some bars only; "" for none
	Segments []segment
}

type segment struct {
	Outcome    string
	Count      int
	X, Y, W, H int
	Fill       string // the outcome's pattern
}

type legendEntry struct {
	Outcome string
	X       int
	Fill    string
}

// fill is the paint of an outcome in the chart id: its pattern, which
// the template defines.
func fill(id, outcome string) string { return "url(#p-" + id + "-" + outcome + ")" }

// Plot geometry, in SVG user units.
const (
	chartWidth  = 720
	chartHeight = 200
	plotTop     = 10
	plotBottom  = 160 // the base line; labels below it
	plotLeft    = 40
)

// drawChart lays out buckets of step from since to until; a bucket the
// store did not return counts nothing.
func drawChart(title, id string, since, until time.Time, step time.Duration, labelLayout string, buckets []activity.Bucket) chart {
	n := int(until.Sub(since) / step)
	counts := make([]map[string]int, n)
	for _, b := range buckets {
		i := int(b.Start.Sub(since) / step)
		if i < 0 || i >= n || b.Start.Before(since) {
			continue
		}
		if counts[i] == nil {
			counts[i] = map[string]int{}
		}
		for o, c := range b.Counts {
			counts[i][o] += c
		}
	}
	c := chart{Title: title, ID: id, Width: chartWidth, Height: chartHeight}
	for _, m := range counts {
		t := 0
		for _, v := range m {
			t += v
		}
		c.Max = max(c.Max, t)
		c.Total += t
	}
	scale := max(c.Max, 1)
	slot := (chartWidth - plotLeft) / max(n, 1)
	every := max(n/6, 1)
	for i, m := range counts {
		start := since.Add(time.Duration(i) * step)
		b := bar{X: plotLeft + i*slot + 1, Width: max(slot-2, 1)}
		if i%every == 0 {
			b.Label = start.UTC().Format(labelLayout)
		}
		y := plotBottom
		var parts []string
		total := 0
		for _, o := range Outcomes {
			v := m[o]
			if v == 0 {
				continue
			}
			total += v
			parts = append(parts, fmt.Sprintf("%d %s", v, o))
			h := max(v*(plotBottom-plotTop)/scale, 1)
			y -= h
			b.Segments = append(b.Segments, segment{Outcome: o, Count: v, X: b.X, Y: y, W: b.Width, H: h, Fill: fill(id, o)})
		}
		when := start.UTC().Format("2006-01-02 15:04 UTC")
		if step >= 24*time.Hour {
			when = start.UTC().Format("2006-01-02")
		}
		b.Title = fmt.Sprintf("%s: %d", when, total)
		if len(parts) > 0 {
			b.Title += " (" + strings.Join(parts, ", ") + ")"
		}
		c.Bars = append(c.Bars, b)
	}
	for i, o := range Outcomes {
		c.Legend = append(c.Legend, legendEntry{Outcome: o, X: plotLeft + i*110, Fill: fill(id, o)})
	}
	return c
}
