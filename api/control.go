package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/herald-ws/herald/auth"
)

// The server API beyond publish (docs/api.md): history, disconnect,
// unsubscribe, channels, info, presence and presence_stats. What needs
// the whole cluster goes through Config.Control, which the node
// implements (package server); this file reads requests, checks them and
// writes answers.

// Control is what the node does for the server API, on every node of the
// cluster. Its methods wait at most until ctx ends; a node that has not
// answered by then is left out (Nodes counts those that answered).
type Control interface {
	Disconnect(ctx context.Context, user string) (Count, error)
	Unsubscribe(ctx context.Context, user, channel string) (Count, error)
	// Channels returns at most limit channels after cursor (by name)
	// matching pattern ("" matches all).
	Channels(ctx context.Context, pattern, cursor string, limit int) (ChannelList, error)
	Info(ctx context.Context) (Info, error)
	IsPresenceChannel(channel string) bool
	Presence(ctx context.Context, channel string) (PresenceList, error)
	PresenceStats(ctx context.Context, channel string) (PresenceCounts, error)
}

// Count answers disconnect (connections closed) and unsubscribe
// (subscriptions removed).
type Count struct {
	Count int `json:"count"`
	Nodes int `json:"nodes"` // nodes that answered
}

// ChannelInfo is one channel with subscribers: on the node that answered
// the request and on all nodes that answered.
type ChannelInfo struct {
	Channel string `json:"channel"`
	Local   int64  `json:"local"`
	Cluster int64  `json:"cluster"`
}

// ChannelList is the answer of GET /api/channels. Next, when not empty,
// is the cursor of the next page.
type ChannelList struct {
	Channels []ChannelInfo `json:"channels"`
	Next     string        `json:"next,omitempty"`
	Nodes    int           `json:"nodes"`
}

// NodeInfo is one node in GET /api/info.
type NodeInfo struct {
	ID            string `json:"id"`
	Version       string `json:"version"`
	ClientAddr    string `json:"client_addr"`
	APIAddr       string `json:"api_addr"`
	Connections   int64  `json:"connections"`
	Subscriptions int64  `json:"subscriptions"`
	Channels      int    `json:"channels"`
	Uptime        int64  `json:"uptime_seconds"`
}

// Info is the answer of GET /api/info: the nodes that answered, sorted
// by id, and their totals.
type Info struct {
	Nodes         []NodeInfo `json:"nodes"`
	Connections   int64      `json:"connections"`
	Subscriptions int64      `json:"subscriptions"`
}

// Member is one connection subscribed to a presence channel.
type Member struct {
	User string `json:"user"`
	Conn string `json:"conn"`
}

// PresenceList is the answer of GET /api/presence.
type PresenceList struct {
	Channel string   `json:"channel"`
	Members []Member `json:"members"`
	Nodes   int      `json:"nodes"`
	// Truncated: some node had more members than one NATS message
	// holds and answered those that fit.
	Truncated bool `json:"truncated,omitempty"`
}

// PresenceCounts is the answer of GET /api/presence_stats. Users is
// exact on one node; in a cluster it is the sum of each node's distinct
// users, so a user connected to two nodes counts twice.
type PresenceCounts struct {
	Channel string `json:"channel"`
	Clients int    `json:"clients"`
	Users   int    `json:"users"`
	Nodes   int    `json:"nodes"`
}

// Limits of the server API's queries.
const (
	DefaultHistoryLimit  = 100
	MaxHistoryLimit      = 1000
	DefaultChannelsLimit = 100
	MaxChannelsLimit     = 1000
	// ControlTimeout bounds how long a cluster-wide call waits for the
	// nodes' answers.
	ControlTimeout = 2 * time.Second
)

// errNoControl answers the cluster endpoints of an API built without
// Config.Control (a bare handler in tests).
var errNoControl = errors.New("api: this node serves no control endpoints")

func (a *handler) controlRoutes(rt *routes, main chan struct{}) {
	rt.add("GET /api/history", "", main, a.authed(a.history))
	rt.add("POST /api/disconnect", "", main, a.authed(a.disconnect))
	rt.add("POST /api/unsubscribe", "", main, a.authed(a.unsubscribe))
	rt.add("GET /api/channels", "", main, a.authed(a.channels))
	rt.add("GET /api/info", "", main, a.authed(a.info))
	rt.add("GET /api/presence", "", main, a.authed(a.presence))
	rt.add("GET /api/presence_stats", "", main, a.authed(a.presenceStats))
}

// intParam reads q[name] as an integer in [lo, hi], def when absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, bool) {
	v := q.Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// channelParam reads and validates ?channel=.
func channelParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	ch := r.URL.Query().Get("channel")
	if !auth.ValidChannel(ch) {
		writeError(w, http.StatusBadRequest, "channel must be 1-255 bytes of [A-Za-z0-9:_.-]")
		return "", false
	}
	return ch, true
}

// historyEntry is one publication in GET /api/history.
type historyEntry struct {
	Offset uint64          `json:"offset"`
	Data   json.RawMessage `json:"data"`
	Time   int64           `json:"time"` // unix milliseconds
}

// historyPage is the answer of GET /api/history: the publications after
// since, oldest first, at most limit. Next is the since of the next page;
// More says whether there is one.
type historyPage struct {
	Channel      string         `json:"channel"`
	Top          uint64         `json:"top"`
	Recovered    bool           `json:"recovered"`
	Publications []historyEntry `json:"publications"`
	Next         uint64         `json:"next"`
	More         bool           `json:"more"`
}

func (a *handler) history(w http.ResponseWriter, r *http.Request) {
	ch, ok := channelParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since must be an offset (a non-negative integer)")
			return
		}
		since = n
	}
	limit, ok := intParam(q, "limit", DefaultHistoryLimit, 1, MaxHistoryLimit)
	if !ok {
		writeError(w, http.StatusBadRequest, "limit must be 1-"+strconv.Itoa(MaxHistoryLimit))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.PublishTimeout)
	defer cancel()
	rec, err := a.cfg.Broker.Recover(ctx, ch, since, true)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "history unavailable: "+err.Error())
		return
	}
	page := historyPage{Channel: ch, Top: rec.Top, Recovered: rec.Recovered && since <= rec.Top,
		Publications: []historyEntry{}, Next: since}
	for _, p := range rec.Publications {
		if p.Offset <= since {
			continue
		}
		if len(page.Publications) == limit {
			page.More = true
			break
		}
		page.Publications = append(page.Publications, historyEntry{Offset: p.Offset, Data: p.Data, Time: p.Time.UnixMilli()})
		page.Next = p.Offset
	}
	writeJSON(w, http.StatusOK, page)
}

// readBody decodes a small JSON body into v, answering 400/413 itself.
func (a *handler) readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body over 64 KiB")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return false
	}
	return true
}

// userRequest is the body of POST /api/disconnect and /api/unsubscribe.
type userRequest struct {
	User    string `json:"user"`
	Channel string `json:"channel"`
}

func (a *handler) control(w http.ResponseWriter) (Control, context.Context, context.CancelFunc) {
	if a.cfg.Control == nil {
		writeError(w, http.StatusNotImplemented, errNoControl.Error())
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), ControlTimeout)
	return a.cfg.Control, ctx, cancel
}

// answer writes res, or 503 for err.
func answer[T any](w http.ResponseWriter, res T, err error) {
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *handler) disconnect(w http.ResponseWriter, r *http.Request) {
	var req userRequest
	if !a.readBody(w, r, &req) {
		return
	}
	if req.User == "" || req.Channel != "" {
		writeError(w, http.StatusBadRequest, `give "user" (and nothing else)`)
		return
	}
	c, ctx, cancel := a.control(w)
	if c == nil {
		return
	}
	defer cancel()
	res, err := c.Disconnect(ctx, req.User)
	answer(w, res, err)
}

func (a *handler) unsubscribe(w http.ResponseWriter, r *http.Request) {
	var req userRequest
	if !a.readBody(w, r, &req) {
		return
	}
	if req.User == "" || !auth.ValidChannel(req.Channel) {
		writeError(w, http.StatusBadRequest, `give "user" and a valid "channel"`)
		return
	}
	c, ctx, cancel := a.control(w)
	if c == nil {
		return
	}
	defer cancel()
	res, err := c.Unsubscribe(ctx, req.User, req.Channel)
	answer(w, res, err)
}

func (a *handler) channels(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := intParam(q, "limit", DefaultChannelsLimit, 1, MaxChannelsLimit)
	if !ok {
		writeError(w, http.StatusBadRequest, "limit must be 1-"+strconv.Itoa(MaxChannelsLimit))
		return
	}
	pattern := q.Get("pattern")
	if len(pattern) > 256 {
		writeError(w, http.StatusBadRequest, "pattern longer than 256 bytes")
		return
	}
	c, ctx, cancel := a.control(w)
	if c == nil {
		return
	}
	defer cancel()
	res, err := c.Channels(ctx, pattern, q.Get("cursor"), limit)
	answer(w, res, err)
}

func (a *handler) info(w http.ResponseWriter, _ *http.Request) {
	c, ctx, cancel := a.control(w)
	if c == nil {
		return
	}
	defer cancel()
	res, err := c.Info(ctx)
	answer(w, res, err)
}

// presenceChannel reads ?channel= and checks that it keeps presence.
func (a *handler) presenceChannel(w http.ResponseWriter, r *http.Request) (string, bool) {
	ch, ok := channelParam(w, r)
	if !ok {
		return "", false
	}
	if a.cfg.Control == nil || !a.cfg.Control.IsPresenceChannel(ch) {
		writeError(w, http.StatusBadRequest, "channel "+ch+" keeps no presence (see -presence-channels)")
		return "", false
	}
	return ch, true
}

func (a *handler) presence(w http.ResponseWriter, r *http.Request) {
	ch, ok := a.presenceChannel(w, r)
	if !ok {
		return
	}
	c, ctx, cancel := a.control(w)
	defer cancel()
	res, err := c.Presence(ctx, ch)
	answer(w, res, err)
}

func (a *handler) presenceStats(w http.ResponseWriter, r *http.Request) {
	ch, ok := a.presenceChannel(w, r)
	if !ok {
		return
	}
	c, ctx, cancel := a.control(w)
	defer cancel()
	res, err := c.PresenceStats(ctx, ch)
	answer(w, res, err)
}
