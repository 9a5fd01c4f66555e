// Package browser holds end-to-end tests that drive a real headless
// Chromium (through chromedp) against a real Herald node: the demo page and
// herald.js, connecting, receiving, reconnecting and recovering, refreshing
// an expiring token, the Sec-WebSocket-Protocol negotiation of /ws, and
// falling back to SSE and long polling behind an nginx that does not pass
// WebSocket upgrades (tlsproxy's nginx-noupgrade.conf; skips without nginx
// unless HERALD_REQUIRE_NGINX=1). It has no code of its own; the tests skip
// when Chromium is not installed (install it with
// scripts/install-chromium.sh) unless HERALD_REQUIRE_BROWSER=1.
package browser
