package api

import (
	"log/slog"
	"net/http"
)

// NewServer returns the API's http.Server: New(cfg) as the handler, with
// cfg's read, write and idle timeouts, the read timeout also bounding the
// header block (a client trickling headers is cut off), and MaxHeaderBytes.
// The caller serves it on its listener.
func NewServer(cfg Config) *http.Server {
	cfg.applyDefaults()
	return &http.Server{
		Handler:           New(cfg),
		ReadTimeout:       cfg.ReadTimeout,
		ReadHeaderTimeout: cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
}
