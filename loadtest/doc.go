// Package loadtest is Herald's load generator, run as `herald loadtest`. It
// opens real WebSocket connections from a spread of loopback source
// addresses to one or more servers, drives a scenario against any RFC 6455
// server, records latencies in HdrHistograms and samples the server
// process's RSS and CPU time from /proc, so that memory per connection and
// CPU per message are measured, not guessed. It never listens and never
// touches a server's internals: everything it knows arrives over the wire
// or from /proc.
//
// Scenarios:
//   - connect: open Conns connections at Rate per second, hold them for
//     Duration, report connect-time percentiles, failures and the server's
//     resident memory per open connection.
//   - echo: Conns connections each keep InFlight messages of Size bytes in
//     flight against an echo endpoint for Duration; report throughput,
//     round-trip percentiles and server CPU per echoed message.
//   - push: Conns subscribers over Channels channels on a gnet client while
//     the generator publishes through the HTTP API; report every lost,
//     duplicated or reordered delivery and the time from the API call to
//     the last subscriber.
//   - churn: keep about Conns connections open while Churn.Rate of them a
//     second are closed and replaced (subscribing on /ws); the stable
//     fraction is never churned and, when the run publishes, its
//     deliveries are measured as in push.
//
// A run may be split over worker processes (Config.Procs), each with its
// own range of source addresses and its own open-file limit; the parent
// merges their histograms and counters into one Result with the same
// formulas a single process uses, and alone publishes. Results can be held
// to thresholds (ParseThresholds, Result.CheckThresholds); Result.Verdict
// adds the run's own failures, so a run that lost connections,
// publications or reads fails unless a threshold on them decides.
//
// Errors are kept by kind (connect, subscribe, publish, read, ...): the
// first three distinct texts of each, so that one flood cannot hide
// another kind's cause. URLs a run could not use are refused by Run before
// anything is dialled.
//
// Every run is bounded by Duration plus set-up and drain limits
// (Config.HardDeadline), and stops by itself. The client is deliberately
// small: an idle held connection costs the generator one socket and no
// goroutine.
//
// wss:// (Herald behind a TLS proxy, see docs/deployment.md) dials with
// crypto/tls over the same hand-written upgrade, trusting Config.TLS
// (-ca-file, -insecure); https:// API calls use the same trust. The
// trade-off: gnet reads raw bytes from a socket and has no TLS, so a
// wss:// subscriber of push and churn cannot live on the client's event
// loops. Each gets a reader goroutine on its blocking *tls.Conn instead:
// one goroutine (a few KiB of stack) and crypto/tls's buffers per
// connection, where ws:// costs none. That is acceptable for the load
// tool only (the server's no-goroutine-per-connection rule stands) and
// means the generator needs more memory per wss:// connection; connect
// holds wss:// connections idle without a goroutine, and echo uses its
// usual reader and writer goroutines either way.
//
// push -transport (transport.go) puts the subscribers on Server-Sent
// Events (/sse, read by the client's event loops like /ws, no goroutine)
// or on long polls (/poll: one poll after another on a kept-alive
// connection, each connection with a goroutine of its own, since a poll is
// a blocking request and reply), with the same accounting.
package loadtest
