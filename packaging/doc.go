// Package packaging holds no Go code: it is the systemd unit
// (herald.service, with herald.env.example) and the container image
// (Dockerfile) Herald ships, and the tests that check them against the
// real tools: systemd-analyze verify for the unit, a podman build and run
// of the image's runtime stage. The tests skip, saying why, when a tool is
// missing; HERALD_REQUIRE_PACKAGING=1 (CI) makes that a failure.
package packaging
