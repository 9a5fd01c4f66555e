package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium finds the browser for headless tests: $HERALD_CHROMIUM, else
// the first of chromium, /usr/bin/chromium, chromium-browser and
// google-chrome on the PATH. Without one the test skips, or fails when
// HERALD_REQUIRE_BROWSER=1 (CI).
func Chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("HERALD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "/usr/bin/chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "Chromium not found (looked for chromium, /usr/bin/chromium, chromium-browser, google-chrome, $HERALD_CHROMIUM); install it with scripts/install-chromium.sh"
	if os.Getenv("HERALD_REQUIRE_BROWSER") == "1" {
		tb.Fatal(msg + " (HERALD_REQUIRE_BROWSER=1)")
	}
	tb.Skip(msg)
	return ""
}
