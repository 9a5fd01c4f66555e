// Package browser holds end-to-end tests that drive a real headless
// Chromium (through chromedp) against a real Herald node: the demo page and
// herald.js, connecting, receiving, reconnecting and recovering, refreshing
// an expiring token, and the Sec-WebSocket-Protocol negotiation of /ws. It
// has no code of its own; the tests skip when Chromium is not installed
// (install it with scripts/install-chromium.sh) unless
// HERALD_REQUIRE_BROWSER=1.
package browser
