// Package loadtest is Herald's load generator, run as `herald loadtest`. It
// opens real WebSocket connections from a spread of loopback source
// addresses, drives a scenario against any RFC 6455 server, records
// latencies in HdrHistograms and samples the server process's RSS and CPU
// time from /proc, so that memory per connection and CPU per message are
// measured, not guessed.
//
// Scenarios:
//   - connect: open Conns connections at Rate per second, hold them for
//     Duration, report connect-time percentiles, failures and the server's
//     resident memory per open connection.
//   - echo: Conns connections each keep InFlight messages of Size bytes in
//     flight against an echo endpoint for Duration; report throughput,
//     round-trip percentiles and server CPU per echoed message.
//
// Every run is bounded by Duration plus fixed set-up and drain limits, and
// stops by itself. The client is deliberately small: an idle held
// connection costs the generator one socket and no goroutine.
package loadtest
