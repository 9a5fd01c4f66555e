// Package api is Herald's HTTP API listener (net/http, not the event
// loops): POST /api/publish, POST /api/batch (batch.go: many
// publications, each with its own channel, in one request), GET
// /api/stats, GET /metrics (Prometheus text format), GET /healthz and GET
// /readyz, the server API's history,
// disconnect, unsubscribe, channels, info, presence and presence_stats
// (control.go), plus handlers mounted through Config.Extra. docs/api.md is
// its contract.
//
// Every /api/* call needs "Authorization: Bearer <key>" when a key is
// configured. Every route answers a wrong method with 405 and Allow. A
// root handler puts each request through a bounded in-flight budget
// (MaxInflight; probes and metrics have their own, ProbeInflight) and
// records herald_api_* metrics by route (never by raw path).
//
// A publish is checked completely (body size, JSON, idempotency key, data
// UTF-8 and JSON validity, channel names and count) before anything goes
// to the broker, so a 4xx stored nothing. Channels are then published one
// by one, each with its own PublishTimeout, and the answer says per
// channel what happened: stored, not stored (503, retry safe) or outcome
// unknown (504, retry safe only with the same Idempotency-Key). A batch
// follows the same rules per item (publishOne is shared): every item is
// checked before any is published, the items of one channel go in their
// order one after another, different channels in parallel (batchParallel
// broker calls at most per request), and the answer has a result per
// item.
//
// It holds no state of its own beyond its metrics: counters come from the
// engine and the hub, publications and idempotency go to the broker, and
// what needs every node of the cluster goes to Config.Control (the node,
// which asks the others through the broker) within ControlTimeout. The
// /metrics registry (metrics.go) reads Stats at scrape time and adds the
// collectors the node passes in (Config.Collectors).
package api
