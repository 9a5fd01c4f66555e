package loadtest

import "errors"

var (
	// ErrDeadline is returned by Run when the run's hard deadline
	// (Config.HardDeadline) passed before it finished.
	ErrDeadline = errors.New("loadtest: hard deadline passed")
	// ErrNoConnections is returned when a scenario that needs connections
	// opened none.
	ErrNoConnections = errors.New("loadtest: no connection opened")
	// ErrWorker is returned when a worker process failed or broke the
	// worker protocol.
	ErrWorker = errors.New("loadtest: worker process failed")
	// ErrParentGone is returned by Assignment.Serve when the parent closed
	// the worker's stdin before the run ended.
	ErrParentGone = errors.New("loadtest: the parent process went away")
	// ErrThreshold is returned by ParseThresholds for a malformed
	// threshold.
	ErrThreshold = errors.New("loadtest: bad threshold")
)
