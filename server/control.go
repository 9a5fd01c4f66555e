package server

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herald-ws/herald/api"
	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/broker"
	"github.com/herald-ws/herald/hub"
	"github.com/herald-ws/herald/session"
)

// The node's side of the server API's cluster-wide endpoints
// (api.Control). A call becomes one control request (JSON) that every
// node answers about itself: through the broker's Control (NATS) in a
// cluster, by this node alone otherwise. Answers are merged here. A node
// that does not answer within api.ControlTimeout (killed, cut off from
// NATS) is missing from the merged answer, so its connections drop out
// of presence, channels and info at once; the call then takes the whole
// timeout until the node directory forgets the node (nodeTTL, 3 s).

// controlRequest is what one node asks all of them.
type controlRequest struct {
	Op      string          `json:"op"`
	User    string          `json:"user,omitempty"`
	Channel string          `json:"channel,omitempty"`
	Pattern string          `json:"pattern,omitempty"`
	Cursor  string          `json:"cursor,omitempty"`
	Limit   int             `json:"limit,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"` // notify: the frame's JSON
}

// controlAnswer is one node's answer; which fields are set depends on Op.
type controlAnswer struct {
	Node     string             `json:"node"`
	Count    int                `json:"count,omitempty"`
	Channels []hub.ChannelCount `json:"channels,omitempty"`
	Info     *api.NodeInfo      `json:"info,omitempty"`
	Members  []api.Member       `json:"members,omitempty"`
	Clients  int                `json:"clients,omitempty"`
	Users    int                `json:"users,omitempty"`
	// Truncated: the node had more presence members than fit in one
	// NATS message (maxAnswerBytes).
	Truncated bool   `json:"truncated,omitempty"`
	Err       string `json:"err,omitempty"`
}

// control is the node as api.Control.
type control struct{ n *Node }

// startControl lets the cluster's nodes ask this one.
func (n *Node) startControl() error {
	ctl, ok := n.broker.(broker.Control)
	if !ok {
		return nil
	}
	return ctl.HandleControl(func(req []byte) []byte {
		var r controlRequest
		if json.Unmarshal(req, &r) != nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), api.ControlTimeout)
		defer cancel()
		if r.Op == "notify" {
			n.hub.Notify(r.Channel, r.Payload, nil)
			return nil
		}
		b, _ := json.Marshal(n.answer(ctx, r, maxAnswerBytes))
		return b
	})
}

// notify sends a presence join or leave to channel's subscribers on every
// node (this one alone when the broker is not clustered, or NATS refused
// the message).
func (n *Node) notify(channel string, payload []byte) {
	if ctl, ok := n.broker.(broker.Control); ok {
		b, _ := json.Marshal(controlRequest{Op: "notify", Channel: channel, Payload: payload})
		if ctl.Tell(b) == nil {
			return
		}
	}
	n.hub.Notify(channel, payload, nil)
}

// maxAnswerBytes bounds the member list of one node's presence answer over
// NATS, whose messages are at most 1 MiB by default: past it the node
// answers the members that fit and says so (Truncated).
const maxAnswerBytes = 768 << 10

// answer is this node's answer to r; limit bounds its presence members'
// JSON size (0: no bound, the node answers itself).
func (n *Node) answer(ctx context.Context, r controlRequest, limit int) controlAnswer {
	a := controlAnswer{Node: n.selfNode().ID}
	var err error
	switch r.Op {
	case "disconnect":
		var closed atomic.Int64
		err = n.engine.VisitOpen(ctx, func(s *session.Session) {
			if n.push.Disconnect(s, r.User) {
				closed.Add(1)
			}
		})
		a.Count = int(closed.Load())
	case "unsubscribe":
		a.Count, err = n.push.UnsubscribeUser(ctx, r.User, r.Channel)
	case "channels":
		var keep func(string) bool
		if r.Pattern != "" {
			pats := []string{r.Pattern}
			keep = func(ch string) bool { return auth.MatchAny(pats, ch) }
		}
		all := n.hub.Channels(keep)
		i := sort.Search(len(all), func(i int) bool { return all[i].Channel > r.Cursor })
		all = all[i:]
		if len(all) > r.Limit {
			all = all[:r.Limit]
		}
		a.Channels = all
	case "info":
		self := n.selfNode()
		st := n.Stats()
		a.Info = &api.NodeInfo{ID: self.ID, Version: self.Version, ClientAddr: self.ClientAddr, APIAddr: self.APIAddr,
			Connections: st.Connections, Subscriptions: st.Subscriptions, Channels: st.Channels,
			Uptime: int64(time.Since(n.started) / time.Second)}
	case "presence":
		var ms []api.Member
		members, perr := n.push.Presence(ctx, r.Channel)
		size := 0
		for _, m := range members {
			if size += len(m.User) + len(m.Conn) + 32; limit > 0 && size > limit {
				a.Truncated = true
				break
			}
			ms = append(ms, api.Member{User: m.User, Conn: m.Conn})
		}
		a.Members, err = ms, perr
	case "presence_stats":
		st := n.push.PresenceStats(r.Channel)
		a.Clients, a.Users = st.Clients, st.Users
	}
	if err != nil {
		a.Err = err.Error()
	}
	return a
}

// ask sends r to every node and returns their answers; without a
// clustered broker, this node's alone.
func (n *Node) ask(ctx context.Context, r controlRequest) ([]controlAnswer, error) {
	ctl, ok := n.broker.(broker.Control)
	if !ok {
		return []controlAnswer{n.answer(ctx, r, 0)}, nil
	}
	req, _ := json.Marshal(r)
	raw, err := ctl.Ask(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]controlAnswer, 0, len(raw))
	seen := map[string]bool{}
	for _, b := range raw {
		var a controlAnswer
		if json.Unmarshal(b, &a) == nil && a.Node != "" && !seen[a.Node] {
			seen[a.Node] = true
			out = append(out, a)
		}
	}
	return out, nil
}

func (c control) count(ctx context.Context, r controlRequest) (api.Count, error) {
	answers, err := c.n.ask(ctx, r)
	if err != nil {
		return api.Count{}, err
	}
	res := api.Count{Nodes: len(answers)}
	for _, a := range answers {
		res.Count += a.Count
	}
	return res, nil
}

func (c control) Disconnect(ctx context.Context, user string) (api.Count, error) {
	return c.count(ctx, controlRequest{Op: "disconnect", User: user})
}

func (c control) Unsubscribe(ctx context.Context, user, channel string) (api.Count, error) {
	return c.count(ctx, controlRequest{Op: "unsubscribe", User: user, Channel: channel})
}

// Channels merges the nodes' pages: each node answers its first limit
// channels after cursor, so the first limit names of their union are the
// cluster's.
func (c control) Channels(ctx context.Context, pattern, cursor string, limit int) (api.ChannelList, error) {
	answers, err := c.n.ask(ctx, controlRequest{Op: "channels", Pattern: pattern, Cursor: cursor, Limit: limit})
	if err != nil {
		return api.ChannelList{}, err
	}
	self := c.n.selfNode().ID
	byName := map[string]*api.ChannelInfo{}
	more := false
	for _, a := range answers {
		if len(a.Channels) == limit {
			more = true
		}
		for _, ch := range a.Channels {
			ci := byName[ch.Channel]
			if ci == nil {
				ci = &api.ChannelInfo{Channel: ch.Channel}
				byName[ch.Channel] = ci
			}
			ci.Cluster += ch.Subscribers
			if a.Node == self {
				ci.Local += ch.Subscribers
			}
		}
	}
	list := api.ChannelList{Channels: make([]api.ChannelInfo, 0, len(byName)), Nodes: len(answers)}
	for _, ci := range byName {
		list.Channels = append(list.Channels, *ci)
	}
	sort.Slice(list.Channels, func(i, j int) bool { return list.Channels[i].Channel < list.Channels[j].Channel })
	if len(list.Channels) > limit {
		list.Channels, more = list.Channels[:limit], true
	}
	if more && len(list.Channels) > 0 {
		list.Next = list.Channels[len(list.Channels)-1].Channel
	}
	return list, nil
}

func (c control) Info(ctx context.Context) (api.Info, error) {
	answers, err := c.n.ask(ctx, controlRequest{Op: "info"})
	if err != nil {
		return api.Info{}, err
	}
	info := api.Info{Nodes: []api.NodeInfo{}}
	for _, a := range answers {
		if a.Info != nil {
			info.Nodes = append(info.Nodes, *a.Info)
			info.Connections += a.Info.Connections
			info.Subscriptions += a.Info.Subscriptions
		}
	}
	sort.Slice(info.Nodes, func(i, j int) bool { return info.Nodes[i].ID < info.Nodes[j].ID })
	return info, nil
}

func (c control) IsPresenceChannel(channel string) bool { return c.n.push.IsPresenceChannel(channel) }

func (c control) Presence(ctx context.Context, channel string) (api.PresenceList, error) {
	answers, err := c.n.ask(ctx, controlRequest{Op: "presence", Channel: channel})
	if err != nil {
		return api.PresenceList{}, err
	}
	res := api.PresenceList{Channel: channel, Members: []api.Member{}, Nodes: len(answers)}
	for _, a := range answers {
		res.Members = append(res.Members, a.Members...)
		res.Truncated = res.Truncated || a.Truncated
	}
	sort.Slice(res.Members, func(i, j int) bool {
		if res.Members[i].User != res.Members[j].User {
			return res.Members[i].User < res.Members[j].User
		}
		return strings.Compare(res.Members[i].Conn, res.Members[j].Conn) < 0
	})
	return res, nil
}

func (c control) PresenceStats(ctx context.Context, channel string) (api.PresenceCounts, error) {
	answers, err := c.n.ask(ctx, controlRequest{Op: "presence_stats", Channel: channel})
	if err != nil {
		return api.PresenceCounts{}, err
	}
	res := api.PresenceCounts{Channel: channel, Nodes: len(answers)}
	for _, a := range answers {
		res.Clients += a.Clients
		res.Users += a.Users
	}
	return res, nil
}
