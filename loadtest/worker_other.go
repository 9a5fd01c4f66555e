//go:build !linux

package loadtest

import "os"

// WorkerStdout returns the worker's report channel: standard output.
func WorkerStdout() (*os.File, error) { return os.Stdout, nil }
