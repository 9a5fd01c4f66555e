package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/server"
)

// StormResult is what a subscribe storm came to.
type StormResult struct {
	Acked    int            // subscriptions acknowledged, in every round
	Refused  map[string]int // error code -> count, first round
	Rounds   int            // rounds until every subscription was live
	Unknown  []string       // replies that were neither an ack nor an error
	Problems []string       // refusals a retry cannot fix (already subscribed, too many channels)
}

// SubscribeStorm opens conns connections to n and has each pipeline perConn
// subscribes (to distinct channels) in one write, then retries whatever
// was refused as unavailable, round after round, until every subscription
// is live or rounds run out. It returns what happened and a function that
// closes the connections (the caller checks the node first); it fails only
// on transport errors.
func SubscribeStorm(n *server.Node, conns, perConn, rounds int) (StormResult, func(), error) {
	clients := make([]*WSClient, conns)
	closeAll := func() {
		for _, c := range clients {
			if c != nil {
				_ = c.Conn.Close()
			}
		}
	}
	for i := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := DialWSContext(ctx, WSURL(n, ""), nil, nil)
		cancel()
		if err != nil {
			closeAll()
			return StormResult{}, func() {}, err
		}
		c.Timeout = 30 * time.Second
		clients[i] = c
	}
	res := StormResult{Refused: map[string]int{}}
	pending := make([][]int, conns) // per connection: channel numbers still to subscribe
	for i := range pending {
		for j := 0; j < perConn; j++ {
			pending[i] = append(pending[i], j)
		}
	}
	var mu sync.Mutex
	for round := 1; round <= rounds; round++ {
		left := 0
		for _, p := range pending {
			left += len(p)
		}
		if left == 0 {
			break
		}
		res.Rounds = round
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i, c := range clients {
			todo := pending[i]
			if len(todo) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf bytes.Buffer
				for _, j := range todo {
					p := fmt.Sprintf(`{"op":"subscribe","channel":"storm-%d-%d","id":%d}`, i, j, j)
					if err := ws.WriteFrame(&buf, ws.MaskFrame(ws.NewTextFrame([]byte(p)))); err != nil {
						errs <- err
						return
					}
				}
				if _, err := c.Conn.Write(buf.Bytes()); err != nil {
					errs <- err
					return
				}
				var retry []int
				for range todo {
					raw, err := c.NextRaw(c.timeout())
					if err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
					var m struct {
						Op   string `json:"op"`
						ID   int    `json:"id"`
						Code string `json:"code"`
					}
					if err := json.Unmarshal(raw, &m); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					switch {
					case m.Op == "ack":
						res.Acked++
					case m.Op == "error" && m.Code == "unavailable":
						if round == 1 {
							res.Refused[m.Code]++
						}
						retry = append(retry, m.ID)
					case m.Op == "error":
						res.Refused[m.Code]++
						res.Problems = append(res.Problems, string(raw))
					default:
						res.Unknown = append(res.Unknown, string(raw))
					}
					mu.Unlock()
				}
				pending[i] = retry
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			closeAll()
			return res, func() {}, err
		}
		time.Sleep(20 * time.Millisecond) // let the worker queue drain a little between rounds
	}
	return res, closeAll, nil
}

// SlowBroker is a broker whose history reads take Delay (a cluster's round
// trip), so that the hub runs them on its worker pool, which a storm can
// fill. It embeds the interface, so a wrapped memory broker's Nonblocking
// is not promoted.
type SlowBroker struct {
	broker.Broker
	Delay time.Duration
}

// Recover sleeps Delay, then recovers.
func (b SlowBroker) Recover(ctx context.Context, channel string, since uint64, history bool) (broker.Recovery, error) {
	time.Sleep(b.Delay)
	return b.Broker.Recover(ctx, channel, since, history)
}
