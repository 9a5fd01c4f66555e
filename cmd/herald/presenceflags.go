package main

import (
	"flag"
	"strings"

	"github.com/herald-ws/herald/auth"
)

// presenceOptions are the presence flags (docs/protocol.md, Presence).
type presenceOptions struct {
	presenceChannels  listFlag
	presenceJoinLeave bool
}

func (o *presenceOptions) presenceFlags(fs *flag.FlagSet) {
	fs.Var(&o.presenceChannels, "presence-channels", "comma-separated channel patterns ('*' suffix wildcards) whose subscribers are tracked for GET /api/presence and /api/presence_stats; empty tracks none")
	fs.BoolVar(&o.presenceJoinLeave, "presence-join-leave", false, "send join and leave messages to the subscribers of -presence-channels")
}

// badPresencePattern returns the first pattern that is neither a channel
// name nor a channel name's prefix followed by '*'.
func (o *presenceOptions) badPresencePattern() (string, bool) {
	for _, p := range o.presenceChannels {
		name, _ := strings.CutSuffix(p, "*")
		if name == "" && p == "*" {
			continue
		}
		if !auth.ValidChannel(name) {
			return p, true
		}
	}
	return "", false
}
