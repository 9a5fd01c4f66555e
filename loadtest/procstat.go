package loadtest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is one reading of a process's resources.
type procSample struct {
	At  time.Time
	RSS int64         // resident set size, bytes
	CPU time.Duration // user + system time since the process started
}

// sampleProc reads /proc/PID/status and /proc/PID/stat.
func sampleProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range bytes.Split(status, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(string(f[0]), 10, 64)
				if err != nil {
					return s, err
				}
				s.RSS = kb << 10
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces; fields start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("loadtest: malformed /proc/%d/stat", pid)
	}
	f := bytes.Fields(stat[i+1:])
	// After ')': state(0) ppid(1) ... utime is field 14 of stat, index 11 here.
	if len(f) < 13 {
		return s, fmt.Errorf("loadtest: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("loadtest: bad cpu times in /proc/%d/stat", pid)
	}
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	return s, nil
}
