package main

import "net/http"

// webHandlers are the browser client and demo page served on the API
// listener.
func webHandlers() map[string]http.Handler { return nil }
