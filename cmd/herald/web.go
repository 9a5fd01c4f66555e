package main

import (
	"net/http"

	heraldjs "github.com/herald-ws/herald/clients/js"
)

// webHandlers are the browser client and demo page served on the API
// listener: /herald.js and /demo/.
func webHandlers() map[string]http.Handler { return heraldjs.Handlers() }
