package engine

import "errors"

// Errors returned by Server methods.
var (
	ErrAlreadyStarted = errors.New("engine: server already started")
	ErrNotStarted     = errors.New("engine: server not started")
)
