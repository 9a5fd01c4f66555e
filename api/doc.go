// Package api is Herald's HTTP API listener (net/http, not the event
// loops): POST /api/publish, GET /api/stats, GET /metrics (Prometheus text
// format), GET /healthz and GET /readyz. Every /api/* call needs
// "Authorization: Bearer <key>" when a key is configured. It holds no state
// of its own: counters come from the engine and the hub, publications go to
// the broker. The /metrics registry (metrics.go) reads Stats at scrape time
// and adds the collectors the node passes in (Config.Collectors).
package api
