package main

import (
	"runtime/debug"
	"strings"
)

// version, when set with -ldflags "-X main.version=v1.2.3", replaces the
// module version the build info carries (which is "(devel)" for a build
// from a work tree rather than from `go install module@version`).
var version = ""

// buildVersion is what a binary knows about the source it was built from.
type buildVersion struct {
	Module   string // v1.2.3, or (devel)
	Revision string // VCS commit, empty when not built in a work tree
	Time     string // commit time, RFC 3339
	Modified bool   // the work tree had uncommitted changes
}

// readVersion extracts the version from bi (nil: no build info, as in a
// binary built without module support); override, when not empty, is the
// release version set at link time.
func readVersion(bi *debug.BuildInfo, override string) buildVersion {
	v := buildVersion{Module: "(devel)"}
	if bi != nil {
		if bi.Main.Version != "" {
			v.Module = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if override != "" {
		v.Module = override
	}
	return v
}

// String is one line: v1.2.3 (revision 0123abcd..., 2026-01-02T03:04:05Z,
// modified); the parenthesis only when there is VCS information.
func (v buildVersion) String() string {
	var extra []string
	if v.Revision != "" {
		extra = append(extra, "revision "+v.Revision)
	}
	if v.Time != "" {
		extra = append(extra, v.Time)
	}
	if v.Modified {
		extra = append(extra, "modified")
	}
	if len(extra) == 0 {
		return v.Module
	}
	return v.Module + " (" + strings.Join(extra, ", ") + ")"
}

// versionString is this binary's version, as `herald version` prints it
// and the startup log line and loadtest -out files record it.
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return readVersion(bi, version).String()
}
