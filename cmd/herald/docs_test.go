package main

import (
	"flag"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestOperationsDocListsEveryFlag keeps docs/operations.md true as flags
// are added: every flag newServeFlags defines must have a row
// "| `-name` | `HERALD_NAME` | default | meaning |", and the table must
// not list flags that do not exist.
func TestOperationsDocListsEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	row := regexp.MustCompile("^\\| `-([a-z0-9-]+)` \\|(.*)$")
	for _, line := range strings.Split(string(b), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			rows[m[1]] = strings.Split(strings.Trim(m[2], " |"), " | ")
		}
	}
	fs, _ := newServeFlags()
	fs.VisitAll(func(f *flag.Flag) {
		cols, ok := rows[f.Name]
		if !ok {
			t.Errorf("docs/operations.md has no row for -%s (%s)", f.Name, f.Usage)
			return
		}
		delete(rows, f.Name)
		if len(cols) < 3 {
			t.Errorf("-%s: row has %d columns after the flag, want environment, default, meaning", f.Name, len(cols))
			return
		}
		if want := "`" + envName(f.Name) + "`"; cols[0] != want {
			t.Errorf("-%s: environment column %s, want %s", f.Name, cols[0], want)
		}
		if strings.TrimSpace(cols[2]) == "" {
			t.Errorf("-%s: no meaning", f.Name)
		}
	})
	for name := range rows {
		t.Errorf("docs/operations.md documents -%s, which herald serve does not have", name)
	}
}

// TestNoReferenceOutsideTheRepository: the repository stands on its own,
// so no tracked file may point into ../shared (which a clone does not
// have). The README used to link ../shared/SPEC.md.
func TestNoReferenceOutsideTheRepository(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	// git grep exits 1 when nothing matches.
	out, err := exec.Command("git", "-C", "../..", "grep", "-n", "-I", "-e", "\\.\\./shared", "--", ".", ":!cmd/herald/docs_test.go").CombinedOutput()
	if err == nil {
		t.Fatalf("references outside the repository:\n%s", out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("git grep: %v\n%s", err, out)
	}
}
