// Package admin is the operator's page on the API listener: GET /admin/
// serves a dependency-free HTML, CSS and JavaScript page embedded in the
// binary, and GET /api/admin/stats the JSON it polls once a second
// (behind the API key, like every /api/* call). The page keeps the API key
// in page memory only (never localStorage, sessionStorage or cookies),
// draws its charts on <canvas> itself, and publishes through the ordinary
// POST /api/publish.
//
// It holds no state and never touches the node's internals: what the JSON
// holds comes from Config.Snapshot, which the node (package server)
// assembles from the engine, the hub and the broker on each request.
package admin
