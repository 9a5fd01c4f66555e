package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFormatting(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	rev := "0123456789abcdef0123456789abcdef01234567"
	cases := []struct {
		name     string
		bi       *debug.BuildInfo
		override string
		want     string
	}{
		{"no build info", nil, "", "(devel)"},
		{"work tree, clean", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs", "git", "vcs.revision", rev, "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "false")},
			"", "(devel) (revision " + rev + ", 2026-12-01T10:00:00Z)"},
		{"work tree, modified", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", rev, "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "true")},
			"", "(devel) (revision " + rev + ", 2026-12-01T10:00:00Z, modified)"},
		{"go install module@version", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}}, "", "v0.1.0"},
		{"pseudo-version", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.1-0.20261201100000-0123456789ab"}}, "", "v0.1.1-0.20261201100000-0123456789ab"},
		{"release ldflags win over the module version", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", rev)},
			"v1.2.3", "v1.2.3 (revision " + rev + ")"},
		{"empty main version", &debug.BuildInfo{}, "", "(devel)"},
	}
	for _, c := range cases {
		if got := readVersion(c.bi, c.override).String(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestVersionCarriesTheRevision builds ./cmd/herald in a git checkout of
// this commit and checks that `herald version` prints the commit's full
// revision (the old code printed "dev" or a 12-digit prefix, and nothing
// when the build carried no VCS stamp). The checkout is a fresh clone
// because Go stamps VCS information only in a repository's main work
// tree, not in a linked `git worktree`.
func TestVersionCarriesTheRevision(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and builds the binary")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	git := func(dir string, args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not built inside a git work tree")
	}
	root := strings.TrimSpace(string(top))
	head := git(root, "rev-parse", "HEAD")
	clone := filepath.Join(t.TempDir(), "src")
	git(root, "clone", "-q", "--shared", "--no-checkout", root, clone)
	git(clone, "checkout", "-q", head)
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/herald")
	build.Dir = clone
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(out))
	re := regexp.MustCompile(`^herald \S+ \(revision ([0-9a-f]{40}), \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\) go\S+ \S+/\S+$`)
	m := re.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("herald version printed %q, want %s", line, re)
	}
	if m[1] != head {
		t.Fatalf("revision %s, want HEAD %s", m[1], head)
	}
}
