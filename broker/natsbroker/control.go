package natsbroker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herald-ws/herald/broker"
)

// controlSubject carries the server API's requests to every node (core
// NATS, nothing stored). Ask gathers the replies on an inbox of its own.
const controlSubject = "herald.control"

// HandleControl subscribes this node to the cluster's control requests;
// each is answered with handle's result when the sender waits for one.
func (b *Broker) HandleControl(handle func(req []byte) []byte) error {
	_, err := b.nc.Subscribe(controlSubject, func(m *nats.Msg) {
		resp := handle(m.Data)
		if m.Reply != "" {
			if err := m.Respond(resp); err != nil {
				b.log.Warn("control reply", "err", err, "bytes", len(resp))
			}
		}
	})
	if err != nil {
		return fmt.Errorf("natsbroker: control subscribe: %w", err)
	}
	if b.nc.IsConnected() {
		_ = b.nc.FlushTimeout(time.Second)
	}
	return nil
}

// Ask publishes req to every node and gathers the answers until every node
// in the directory answered or ctx ends.
func (b *Broker) Ask(ctx context.Context, req []byte) ([][]byte, error) {
	if !b.nc.IsConnected() {
		return nil, fmt.Errorf("%w: control request: not connected to NATS", broker.ErrUnavailable)
	}
	want := max(len(b.Nodes()), 1)
	inbox := b.nc.NewRespInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: control inbox: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest(controlSubject, inbox, req); err != nil {
		return nil, fmt.Errorf("natsbroker: control request: %w", err)
	}
	var out [][]byte
	for len(out) < want {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the deadline: the nodes that answered are the answer
		}
		out = append(out, m.Data)
	}
	return out, nil
}

// Tell publishes req to every node.
func (b *Broker) Tell(req []byte) error {
	if err := b.nc.Publish(controlSubject, req); err != nil {
		return fmt.Errorf("natsbroker: control message: %w", err)
	}
	return nil
}
