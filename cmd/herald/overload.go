package main

import (
	"flag"
	"strings"
	"time"

	"github.com/herald-ws/herald/auth"
	"github.com/herald-ws/herald/hub"
)

// overloadOptions are the flags of the overload policy (README,
// "Overload"): the event loops' inbox bounds, the publish path's
// back-pressure, conflation and admission under reconnect storms.
type overloadOptions struct {
	inboxPublications int
	inboxBytes        byteSize
	overloadWait      time.Duration
	conflateChannels  listFlag
	upgradeRate       float64
	maxConnsPerIP     int
}

func (o *overloadOptions) overloadFlags(fs *flag.FlagSet) {
	o.inboxBytes = hub.DefaultInboxBytes
	fs.IntVar(&o.inboxPublications, "loop-inbox-publications", hub.DefaultInboxPublications, "publications an event loop's inbox holds before the loop counts as behind (3/4 of it) and publishes wait or are refused")
	fs.Var(&o.inboxBytes, "loop-inbox-bytes", "bytes of encoded publications an event loop's inbox holds (the same policy as -loop-inbox-publications)")
	fs.DurationVar(&o.overloadWait, "overload-wait", hub.DefaultAdmitWait, "how long an API publish waits for a loop that is behind before it is answered 503 overloaded with Retry-After (nothing stored)")
	fs.Var(&o.conflateChannels, "conflate-channels", "comma-separated channel patterns ('*' suffix wildcards, e.g. ticker:*) whose subscribers that are behind get only the newest publication; offsets show what they skipped")
	fs.Float64Var(&o.upgradeRate, "upgrade-rate", 0, "new client connections admitted per second on this node; past it 503 with a jittered Retry-After; 0 means no limit")
	fs.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", 0, "open client connections from one source address past which new ones get 429; 0 means no limit")
}

// validateOverload checks the overload flags, reporting each bad one
// through bad.
func (o *overloadOptions) validateOverload(bad func(name, format string, a ...any), apiWriteTimeout time.Duration) {
	if o.inboxPublications < 1 {
		bad("loop-inbox-publications", "must be at least 1, not %d", o.inboxPublications)
	}
	if o.inboxBytes < 1<<10 {
		bad("loop-inbox-bytes", "must be at least 1KiB")
	}
	if o.overloadWait <= 0 {
		bad("overload-wait", "must be more than 0, not %v", o.overloadWait)
	} else if apiWriteTimeout > 0 && o.overloadWait >= apiWriteTimeout {
		bad("overload-wait", "(%v) must be shorter than -api-write-timeout (%v), or an overloaded publish could not be answered", o.overloadWait, apiWriteTimeout)
	}
	for _, p := range o.conflateChannels {
		if prefix, _ := strings.CutSuffix(p, "*"); prefix != "" && !auth.ValidChannel(prefix) {
			bad("conflate-channels", "%q is not a channel pattern ([A-Za-z0-9:_.-], optionally ending in *)", p)
		}
	}
	if o.upgradeRate < 0 {
		bad("upgrade-rate", "must be 0 (no limit) or more, not %v", o.upgradeRate)
	}
	if o.maxConnsPerIP < 0 {
		bad("max-conns-per-ip", "must be 0 (no limit) or more, not %d", o.maxConnsPerIP)
	}
}
