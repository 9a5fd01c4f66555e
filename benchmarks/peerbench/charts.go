package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
)

// chart is one PNG of the report: its file name under the charts
// directory and its title, for the Markdown link.
type chart struct {
	File  string
	Title string
}

// palette gives every server the same colour in every chart.
var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // herald
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	color.RGBA{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
	color.RGBA{R: 0xbc, G: 0xbd, B: 0x22, A: 0xff},
	color.RGBA{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff},
}

// series is one server's bars in a grouped bar chart.
type series struct {
	Name   string
	Color  color.Color // nil: the palette's colour for the series' position
	Values []float64   // one per group; 0 for missing
}

// barChart draws groups of bars, one bar per series in each group, with
// each bar's value printed above it, and saves the PNG to file.
func barChart(file, title, yLabel string, groups []string, ss []series, format func(float64) string) error {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.Y.Label.Text = yLabel
	p.Y.Min = 0
	p.Title.Padding = vg.Points(6)
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Add(plotter.NewGrid())
	n := len(ss)
	barW := min(40, max(14, 360/float64(max(n*len(groups), 1))))
	width := vg.Points(barW)
	ymax := 0.0
	for i, s := range ss {
		bars, err := plotter.NewBarChart(plotter.Values(s.Values), width)
		if err != nil {
			return err
		}
		bars.Color = s.Color
		if bars.Color == nil {
			bars.Color = palette[i%len(palette)]
		}
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(i)-float64(n-1)/2) * width
		p.Add(bars)
		p.Legend.Add(s.Name, bars)

		xys := make(plotter.XYs, len(s.Values))
		labels := make([]string, len(s.Values))
		for g, v := range s.Values {
			xys[g] = plotter.XY{X: float64(g), Y: v}
			if v > 0 {
				labels[g] = format(v)
			}
			ymax = max(ymax, v)
		}
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return err
		}
		for k := range l.TextStyle {
			l.TextStyle[k] = text.Style{
				Color:    color.Black,
				Font:     font.From(plot.DefaultFont, vg.Points(7)),
				XAlign:   text.XCenter,
				YAlign:   text.YBottom,
				Handler:  plot.DefaultTextHandler,
				Rotation: 0,
			}
		}
		l.Offset = vg.Point{X: bars.Offset, Y: vg.Points(2)}
		p.Add(l)
	}
	// Head room for the value labels and the legend.
	p.Y.Max = ymax * (1.15 + 0.06*float64(n))
	p.NominalX(groups...)
	// Half a slot of margin each side, so the outer groups' bars fit.
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5
	w := vg.Points(max(600, float64(len(groups))*(float64(n)*barW+40)+120))
	return p.Save(w, vg.Points(300), file)
}

// fmtValue prints a bar's value with three significant figures.
func fmtValue(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// charts draws the report's charts into dir: memory per connection per
// server over the idle scenarios, and for each echo and broadcast scenario
// its latency percentiles per server. Scenarios without data are left out.
func chartsFor(dir string, servers []server, scenarios []scenario, data map[string]map[string][]measurement) ([]chart, error) {
	var out []chart
	medianOf := func(sc, srv, key string) float64 {
		v, _ := median(data[sc][srv], key)
		return v
	}
	// Memory: one group per server that has figures, one bar per idle
	// scenario.
	var idle []scenario
	for _, sc := range scenarios {
		if sc.Config.Scenario == "connect" && sc.Metric == "rss_per_conn" && len(data[sc.Name]) > 0 {
			idle = append(idle, sc)
		}
	}
	var measured []server
	for _, srv := range servers {
		for _, sc := range idle {
			if len(data[sc.Name][srv.Name]) > 0 {
				measured = append(measured, srv)
				break
			}
		}
	}
	if len(measured) > 0 {
		var ss []series
		var groups []string
		for _, srv := range measured {
			groups = append(groups, srv.Name)
		}
		for _, sc := range idle {
			s := series{Name: fmt.Sprintf("%s (%d conns)", sc.Name, sc.Config.Conns)}
			for _, srv := range measured {
				s.Values = append(s.Values, medianOf(sc.Name, srv.Name, "rss_per_conn"))
			}
			ss = append(ss, s)
		}
		c := chart{File: "memory-per-conn.png", Title: "Server memory per idle connection"}
		if err := barChart(filepath.Join(dir, c.File), c.Title+" (RSS delta / connections, lower is better)", "bytes per connection", groups, ss, fmtValue); err != nil {
			return nil, err
		}
		out = append(out, c)
	}

	// Channel memory: one group per channel-memory scenario, RSS and heap
	// side by side.
	var chans []scenario
	for _, sc := range channelScenarios(scenarios) {
		if len(data[sc.Name]["herald"]) > 0 {
			chans = append(chans, sc)
		}
	}
	if len(chans) > 0 {
		rss := series{Name: "RSS"}
		heap := series{Name: "heap in use"}
		var groups []string
		for _, sc := range chans {
			groups = append(groups, strings.TrimPrefix(sc.Name, "channels-"))
			rss.Values = append(rss.Values, max(0, medianOf(sc.Name, "herald", "rss_per_channel")))
			heap.Values = append(heap.Values, max(0, medianOf(sc.Name, "herald", "heap_per_channel")))
		}
		c := chart{File: "channel-memory.png", Title: "Herald memory per channel"}
		if err := barChart(filepath.Join(dir, c.File), c.Title+" (delta / channels, lower is better)", "bytes per channel", groups, []series{rss, heap}, fmtValue); err != nil {
			return nil, err
		}
		out = append(out, c)
	}

	// Latency: one chart per echo or broadcast scenario; groups are
	// percentiles, bars are servers.
	for _, sc := range scenarios {
		if len(data[sc.Name]) == 0 || sc.Sustained {
			continue
		}
		var keys, groups []string
		var what string
		switch sc.Config.Scenario {
		case "echo":
			keys = []string{"rtt_p50_ms", "rtt_p90_ms", "rtt_p99_ms", "rtt_p999_ms"}
			groups = []string{"p50", "p90", "p99", "p99.9"}
			what = "echo round trip"
		case "push":
			keys = []string{"last_p50_ms", "last_p90_ms", "last_p99_ms", "last_max_ms"}
			groups = []string{"p50", "p90", "p99", "max"}
			what = "publish to last subscriber"
		default:
			continue
		}
		var ss []series
		for i, srv := range servers {
			if len(data[sc.Name][srv.Name]) == 0 {
				continue
			}
			s := series{Name: srv.Name, Color: palette[i%len(palette)]}
			for _, k := range keys {
				s.Values = append(s.Values, medianOf(sc.Name, srv.Name, k))
			}
			ss = append(ss, s)
		}
		c := chart{File: sc.Name + "-latency.png", Title: fmt.Sprintf("%s: %s latency", sc.Name, what)}
		if err := barChart(filepath.Join(dir, c.File), c.Title+" (lower is better)", "milliseconds", groups, ss, fmtValue); err != nil {
			return nil, err
		}
		out = append(out, c)
	}

	// Sustained fan-out: one group per offered rate, one bar per server,
	// for p99 to the last subscriber and for deliveries per second.
	var rates []scenario
	for _, sc := range scenarios {
		if sc.Sustained && len(data[sc.Name]) > 0 {
			rates = append(rates, sc)
		}
	}
	if len(rates) > 0 {
		var groups []string
		for _, sc := range rates {
			groups = append(groups, fmt.Sprintf("%.0f/s", sc.Config.Push.Rate))
		}
		for _, m := range []struct{ key, file, title, unit string }{
			{"last_p99_ms", "sustained-p99.png", "Sustained fan-out to 10,000: p99 to the last subscriber against offered publications per second (lower is better)", "milliseconds"},
			{"deliveries_per_s", "sustained-deliveries.png", "Sustained fan-out to 10,000: deliveries per second against offered publications per second (higher is better)", "deliveries per second"},
		} {
			var ss []series
			for i, srv := range servers {
				s := series{Name: srv.Name, Color: palette[i%len(palette)]}
				has := false
				for _, sc := range rates {
					v := medianOf(sc.Name, srv.Name, m.key)
					has = has || v > 0
					s.Values = append(s.Values, v)
				}
				if has {
					ss = append(ss, s)
				}
			}
			c := chart{File: m.file, Title: m.title}
			if err := barChart(filepath.Join(dir, c.File), c.Title, m.unit, groups, ss, fmtValue); err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}
