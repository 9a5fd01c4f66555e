package session

import (
	"fmt"
	"testing"
)

func TestStatsCountClose(t *testing.T) {
	var s Stats
	named := 0
	for r := CloseReason(1); r < maxCloseReasons; r++ {
		if r.String() == "unknown" {
			continue
		}
		named++
		for range int(r) {
			s.CountClose(r, 0)
		}
	}
	if named < int(CloseTimeout) {
		t.Fatalf("%d named close reasons below %d slots: a reason was added past the table", named, maxCloseReasons)
	}
	s.CountClose(0, 0)
	s.CountClose(200, 0) // out of range: counted unnamed
	seen := map[CloseReason]int64{}
	s.Closes(func(r CloseReason, n int64) {
		if _, dup := seen[r]; dup {
			t.Errorf("reason %v reported twice", r)
		}
		seen[r] = n
	})
	for r, n := range seen {
		want := int64(r)
		if r == 0 {
			want = 2
		}
		if n != want {
			t.Errorf("reason %v (%d): count %d, want %d", r, r, n, want)
		}
	}
	if len(seen) != named+1 {
		t.Errorf("%d reasons reported, want %d named plus the unnamed slot", len(seen), named)
	}

	// A fresh Stats reports every named reason at zero and no unnamed slot.
	var fresh Stats
	count := 0
	fresh.Closes(func(r CloseReason, n int64) {
		count++
		if r == 0 || n != 0 {
			t.Errorf("fresh stats report %v = %d", r, n)
		}
	})
	if count != named {
		t.Errorf("fresh stats report %d reasons, want %d", count, named)
	}
}

func TestStatsRefuse(t *testing.T) {
	for _, tc := range []struct {
		statuses []int
		want     map[int]int64 // non-zero counts
	}{
		{nil, map[int]int64{}},
		{[]int{503, 503, 401}, map[int]int64{503: 2, 401: 1}},
		{[]int{418}, map[int]int64{418: 1}},
		{[]int{99, 600, -1, 1 << 20}, map[int]int64{0: 4}},
		{[]int{100, 599}, map[int]int64{100: 1, 599: 1}},
	} {
		t.Run(fmt.Sprint(tc.statuses), func(t *testing.T) {
			var s Stats
			for _, st := range tc.statuses {
				s.Refuse(st)
			}
			if got := s.HandshakeRejects.Load(); got != int64(len(tc.statuses)) {
				t.Errorf("HandshakeRejects %d, want %d", got, len(tc.statuses))
			}
			got := map[int]int64{}
			last := -1
			s.Refused(func(status int, n int64) {
				if status <= last {
					t.Errorf("status %d after %d: not increasing", status, last)
				}
				last = status
				if n == 0 && !commonRefusal(status) {
					t.Errorf("status %d reported at zero", status)
				}
				if n != 0 {
					got[status] = n
				}
			})
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("refused %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStatsCloseCodes(t *testing.T) {
	var s Stats
	for _, c := range []uint16{0, 1000, 1000, 1001, 1008, 1012, 4000, 1013, 1009} {
		s.CountClose(ClosePeer, c)
	}
	got := map[string]int64{}
	s.CloseCodes(func(code string, n int64) { got[code] = n })
	want := map[string]int64{"none": 1, "1000": 2, "1001": 1, "1002": 0, "1003": 0, "1007": 0, "1008": 1, "1009": 1, "1011": 0, "1012": 1, "other": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("close codes %v, want %v", got, want)
	}
}
