package broker

import "context"

// Control is implemented by clustered brokers: it carries the server
// API's commands and queries (disconnect a user, list presence, count
// channels) to every node of the cluster, this one included, and brings
// back their answers. Requests and answers are opaque bytes; the node
// (package server) gives them meaning.
type Control interface {
	// HandleControl sets the function that answers every node's requests
	// on this node. It is called once, before Ask or Tell; handle may
	// block briefly and is called from one goroutine at a time.
	HandleControl(handle func(req []byte) []byte) error
	// Ask sends req to every node and returns the answers that came back
	// before ctx ended or once every node of the directory answered,
	// whichever is first. A node that does not answer in time (dead, cut
	// off from the broker) is simply missing from the answers.
	Ask(ctx context.Context, req []byte) ([][]byte, error)
	// Tell sends req to every node without waiting for answers.
	Tell(req []byte) error
}
