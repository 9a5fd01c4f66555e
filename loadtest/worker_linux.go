package loadtest

import (
	"fmt"
	"os"
	"syscall"
)

// WorkerStdout returns the worker's report channel, the process's original
// standard output, and points file descriptor 1 at standard error, so that
// a library printing to stdout (gnet logs there) cannot interleave with a
// report line. Call it once, first thing, in a worker process only.
func WorkerStdout() (*os.File, error) {
	fd, err := syscall.Dup(1)
	if err != nil {
		return nil, fmt.Errorf("loadtest: dup stdout: %w", err)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.Dup3(2, 1, 0); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("loadtest: stdout to stderr: %w", err)
	}
	return os.NewFile(uintptr(fd), "worker-report"), nil
}
