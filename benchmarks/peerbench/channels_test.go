package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const exposition = `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.1e-05
go_gc_duration_seconds_sum 0.000123
go_gc_duration_seconds_count 7
# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 3.178496e+06
go_memstats_heap_inuse_bytes_total 1
herald_channels 0
`

func TestParseRuntimeMemory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    runtimeMemory
		wantErr string
	}{
		{"exposition", exposition, runtimeMemory{HeapInuse: 3178496, GCs: 7}, ""},
		{"no gc count", strings.ReplaceAll(exposition, "go_gc_duration_seconds_count 7\n", ""), runtimeMemory{}, "lack"},
		{"no heap", strings.ReplaceAll(exposition, "go_memstats_heap_inuse_bytes 3.178496e+06\n", ""), runtimeMemory{}, "lack"},
		{"bad value", strings.ReplaceAll(exposition, "3.178496e+06", "lots"), runtimeMemory{}, "go_memstats_heap_inuse_bytes"},
		{"empty", "", runtimeMemory{}, "lack"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRuntimeMemory([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestChannelResultMeasurement(t *testing.T) {
	const mib = 1 << 20
	full := channelResult{Channels: 1000, SetupSeconds: 0.5,
		Before: memSample{RSS: 10 * mib, HeapInuse: 4 * mib, GCs: 1},
		After:  memSample{RSS: 10*mib + 500_000, HeapInuse: 4*mib + 300_000, GCs: 2}}
	m, err := full.measurement()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{"rss_per_channel": 500, "heap_per_channel": 300, "rss_before_mib": 10, "heap_before_mib": 4, "setup_per_s": 2000} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}

	noGC := full
	noGC.After.HeapInuse = 0
	m, err = noGC.measurement()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["heap_per_channel"]; ok {
		t.Errorf("heap per channel reported though the after phase saw no GC: %v", m)
	}
	if m["rss_per_channel"] != 500 {
		t.Errorf("rss_per_channel = %v, want 500", m["rss_per_channel"])
	}

	for _, bad := range []channelResult{{}, {Channels: 10, After: memSample{RSS: 1}}, {Channels: 10, Before: memSample{RSS: 1}}} {
		if _, err := bad.measurement(); err == nil {
			t.Errorf("%+v measured", bad)
		}
	}
}

func TestSelectScenarios(t *testing.T) {
	all := []scenario{{Name: "idle-10k"}, {Name: "channels-subscribed-10k"}, {Name: "channels-subscribed-100k"}}
	got, err := selectScenarios(all, "channels-subscribed-100k, idle-10k")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "idle-10k" || got[1].Name != "channels-subscribed-100k" {
		t.Fatalf("got %v", got)
	}
	if _, err := selectScenarios(all, "idle-10k,channels-subscribed"); err == nil || !strings.Contains(err.Error(), "channels-subscribed") {
		t.Fatalf("a prefix of a name was accepted: %v", err)
	}
}

func TestTargetsLeaveOutUnselectedScenarios(t *testing.T) {
	data := map[string]map[string][]measurement{"idle-10k": {"herald": {{"rss_per_conn": 900}}}}
	if got := targets([]scenario{{Name: "channels-subscribed-10k"}}, data); got != "" {
		t.Fatalf("targets of a channel-only run:\n%s", got)
	}
	got := targets([]scenario{{Name: "idle-10k"}, {Name: "broadcast-10k"}}, data)
	if !strings.Contains(got, "| idle memory per connection at 10k: at most 1 KiB | 900.00 | 1024.00 | yes |") {
		t.Errorf("idle target missing or wrong:\n%s", got)
	}
	if !strings.Contains(got, "broadcast to 10k: p99 under 40 ms | not measured") {
		t.Errorf("a selected scenario without figures is not reported as not measured:\n%s", got)
	}
	if strings.Contains(got, "19k") {
		t.Errorf("an unselected scenario's target is reported:\n%s", got)
	}
}

func TestRenderChannels(t *testing.T) {
	scs := []scenario{
		{Name: "idle-10k"},
		{Name: "channels-subscribed-10k", Channels: &channelLoad{Channels: 10000, Conns: 100}},
		{Name: "channels-one-message-10k", Channels: &channelLoad{Channels: 10000, Size: 100}},
	}
	data := map[string]map[string][]measurement{"channels-subscribed-10k": {"herald": {
		{"rss_per_channel": 700, "heap_per_channel": 300, "rss_before_mib": 12, "rss_after_mib": 19, "heap_before_mib": 5, "heap_after_mib": 8, "setup_per_s": 90000},
		{"rss_per_channel": 500, "heap_per_channel": 310, "rss_before_mib": 12, "rss_after_mib": 17, "heap_before_mib": 5, "heap_after_mib": 8, "setup_per_s": 80000},
		{"rss_per_channel": 600, "rss_before_mib": 12, "rss_after_mib": 18, "setup_per_s": 85000},
	}}}
	got := renderChannels(scs, data)
	for _, want := range []string{
		"## Channel memory (Herald only)",
		"no channel concept",
		"| channels-subscribed-10k | 10000 | 100 | 600 (500–700) | 305 (300–310) | 12.0 → 18.0 | 5.0 → 8.0 | 85000 | 3 |",
		"| channels-one-message-10k | 10000 | none | failed |",
		"one 100-byte JSON message",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if renderChannels(scs[:1], data) != "" {
		t.Error("a run without channel scenarios has a channel section")
	}
}

// TestChannelsAgainstHerald runs both kinds of measurement, small, against
// a real herald serve, and checks that refused subscribes and publishes
// fail the measurement instead of passing for cheap channels.
func TestChannelsAgainstHerald(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs herald serve")
	}
	bin := filepath.Join(t.TempDir(), "herald")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/herald").CombinedOutput(); err != nil {
		t.Fatalf("build herald: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name    string
		load    channelLoad
		wantErr string
	}{
		{"subscribed", channelLoad{Channels: 301, Conns: 4}, ""},
		{"one message", channelLoad{Channels: 1500, Size: 100}, ""},
		{"subscribes refused", channelLoad{Channels: 300, Conns: 4, Flags: []string{"-max-channels-per-conn", "50"}}, "too_many_channels"},
		{"publishes refused", channelLoad{Channels: 1500, Size: 100, Flags: []string{"-max-channels", "1200"}}, "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), channelLimit)
			defer cancel()
			start := time.Now()
			res, err := runChannels(ctx, bin, tc.name, tc.load)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v in %v", res, time.Since(start))
			if res.Before.GCs == 0 || res.After.GCs == 0 || res.Before.HeapInuse == 0 || res.After.HeapInuse == 0 {
				t.Errorf("a sampling phase ended without a GC: %+v", res)
			}
			m, err := res.measurement()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := m["heap_per_channel"]; !ok {
				t.Errorf("no heap figure: %v", m)
			}
		})
	}
}
