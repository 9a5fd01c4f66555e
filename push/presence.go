package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/hub"
	"github.com/herald-ws/herald/session"
)

// Presence, for channels matching Config.PresenceChannels.
//
// Who is subscribed is not stored a second time: the hub's subscriptions
// are the members, and listing them (Presence) visits the channel's
// subscribers on their loops. What is kept is the count per channel of
// connections and of distinct users (presenceTable), so PresenceStats is
// one map lookup whatever the channel's size. A member costs one entry
// in its channel's user map (the user id's string is shared with the
// token's identity, not copied) and, on its connection, the channel's
// name in its membership (allocated on the connection's first join, with
// its connection id; other connections pay one nil pointer).
//
// A connection counts as a member from its subscribe ack to its
// unsubscribe (by itself or by the API) or its close. With
// Config.PresenceJoinLeave, each change is sent to the channel's
// subscribers as {"op":"join"|"leave","channel":..,"user":..,"conn":..}
// (the joiner included) through Config.Notify, which reaches every node.

// Member is one subscription of a presence channel.
type Member struct {
	User string `json:"user"` // "" for an anonymous connection
	Conn string `json:"conn"` // the connection's id, unique in the cluster
}

// PresenceStats are a presence channel's counts on this node.
type PresenceStats struct {
	Clients int `json:"clients"` // subscribed connections
	Users   int `json:"users"`   // distinct users among them (anonymous connections count as one)
}

// presenceTable is the per-channel counts, sharded by channel name so
// that subscribes on different loops rarely share a lock.
type presenceTable struct {
	shards [64]presenceShard
}

type presenceShard struct {
	mu sync.Mutex
	m  map[string]*presenceChan
}

type presenceChan struct {
	clients int
	users   map[string]int32 // connections per user
}

func (t *presenceTable) shard(channel string) *presenceShard {
	h := uint32(2166136261)
	for i := 0; i < len(channel); i++ {
		h ^= uint32(channel[i])
		h *= 16777619
	}
	return &t.shards[h%uint32(len(t.shards))]
}

func (t *presenceTable) join(channel, user string) {
	sh := t.shard(channel)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[string]*presenceChan{}
	}
	pc := sh.m[channel]
	if pc == nil {
		pc = &presenceChan{users: map[string]int32{}}
		sh.m[channel] = pc
	}
	pc.clients++
	pc.users[user]++
	sh.mu.Unlock()
}

func (t *presenceTable) leave(channel, user string) {
	sh := t.shard(channel)
	sh.mu.Lock()
	if pc := sh.m[channel]; pc != nil {
		pc.clients--
		if pc.users[user]--; pc.users[user] <= 0 {
			delete(pc.users, user)
		}
		if pc.clients <= 0 {
			delete(sh.m, channel)
		}
	}
	sh.mu.Unlock()
}

func (t *presenceTable) stats(channel string) PresenceStats {
	sh := t.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if pc := sh.m[channel]; pc != nil {
		return PresenceStats{Clients: pc.clients, Users: len(pc.users)}
	}
	return PresenceStats{}
}

// newNodeTag is the prefix of this node's connection ids: random, so ids
// from different nodes (or a restarted one) never collide.
func newNodeTag() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// membership is a connection's presence: its id on this node and the
// presence channels it is a member of.
type membership struct {
	conn     uint64
	channels []string
}

// connID is c's connection id: the node's tag and c's sequence number.
// c must be a member of some channel.
func (h *Handler) connID(c *client) string {
	return h.tag + "-" + strconv.FormatUint(c.member.conn, 36)
}

// IsPresenceChannel reports whether channel keeps presence.
func (h *Handler) IsPresenceChannel(channel string) bool {
	return len(h.cfg.PresenceChannels) > 0 && auth.MatchAny(h.cfg.PresenceChannels, channel)
}

// joined records c as a member of channel (its subscribe was acked) and
// announces it. Runs on c's loop.
func (h *Handler) joined(c *client, channel string) {
	if !h.IsPresenceChannel(channel) {
		return
	}
	if c.member == nil {
		c.member = &membership{conn: h.conns.Add(1)}
	}
	c.member.channels = append(c.member.channels, channel)
	h.presence.join(channel, c.id.User)
	h.announce("join", channel, c)
}

// left undoes joined for channel, if c was a member. Runs on c's loop.
func (h *Handler) left(c *client, channel string) {
	if c.member == nil {
		return
	}
	chans := c.member.channels
	for i, ch := range chans {
		if ch != channel {
			continue
		}
		last := len(chans) - 1
		chans[i] = chans[last]
		chans[last] = ""
		// The membership (and its id) stays for the connection's life, so
		// a rejoin announces the same conn.
		c.member.channels = chans[:last]
		h.presence.leave(channel, c.id.User)
		h.announce("leave", channel, c)
		return
	}
}

// announce sends a join or leave to the channel's subscribers.
func (h *Handler) announce(op, channel string, c *client) {
	if !h.cfg.PresenceJoinLeave {
		return
	}
	b := make([]byte, 0, 64+len(channel)+len(c.id.User))
	b = append(b, `{"op":"`...)
	b = append(b, op...)
	b = append(b, `","channel":"`...)
	b = append(b, channel...) // valid channel names need no escaping
	b = append(b, `","user":`...)
	b = strconv.AppendQuote(b, c.id.User)
	b = append(b, `,"conn":"`...)
	b = append(b, h.connID(c)...)
	b = append(b, `"}`...)
	if h.cfg.Notify != nil {
		h.cfg.Notify(channel, b)
		return
	}
	h.cfg.Hub.Notify(channel, b, nil)
}

// Presence lists this node's members of channel, visiting its subscribers
// on their loops (one pass over them). Safe from any goroutine but the
// event loops.
func (h *Handler) Presence(ctx context.Context, channel string) ([]Member, error) {
	var mu sync.Mutex
	var out []Member
	err := h.cfg.Hub.Visit(ctx, channel, func(sub *hub.Subscription) {
		c, ok := sub.Session().Value.(*client)
		if !ok || !c.isPresent(channel) {
			return
		}
		m := Member{User: c.id.User, Conn: h.connID(c)}
		mu.Lock()
		out = append(out, m)
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	return append([]Member(nil), out...), err
}

// PresenceStats returns this node's counts for channel: one map lookup.
// Safe from any goroutine.
func (h *Handler) PresenceStats(channel string) PresenceStats {
	return h.presence.stats(channel)
}

func (c *client) isPresent(channel string) bool {
	if c.member == nil {
		return false
	}
	for _, ch := range c.member.channels {
		if ch == channel {
			return true
		}
	}
	return false
}

// Disconnect closes s with 4100 when its user is user, and reports
// whether it did. It is the visitor of the server API's disconnect
// (engine.Server.VisitOpen); must run on s's loop.
func (h *Handler) Disconnect(s *session.Session, user string) bool {
	c, ok := s.Value.(*client)
	if !ok || c.id.User != user || user == "" {
		return false
	}
	s.Close(session.CloseDisconnected, "disconnected by the server")
	if !s.Flush() {
		s.Abort(session.CloseDisconnected)
	}
	return true
}

// UnsubscribeUser removes every subscription of user's connections on
// this node to channel, telling each connection with
// {"op":"unsubscribed","channel":..}, and returns how many it removed.
// Safe from any goroutine but the event loops.
func (h *Handler) UnsubscribeUser(ctx context.Context, user, channel string) (int, error) {
	var mu sync.Mutex
	n := 0
	err := h.cfg.Hub.Visit(ctx, channel, func(sub *hub.Subscription) {
		s := sub.Session()
		c, ok := s.Value.(*client)
		if !ok || c.id.User != user || user == "" {
			return
		}
		h.cfg.Hub.Unsubscribe(sub)
		c.subs.remove(sub)
		h.left(c, channel)
		reply(s, func(b []byte) []byte {
			b = append(b, `{"op":"unsubscribed","channel":"`...)
			b = append(b, channel...)
			return append(b, `"}`...)
		})
		if !s.Flush() {
			s.Abort(session.ClosePolicy)
		}
		mu.Lock()
		n++
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	return n, err
}
