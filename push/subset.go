package push

import "github.com/herald-ws/herald/hub"

// subSet is one connection's subscriptions by channel. Most connections
// hold a handful, so it is a slice searched linearly (8 bytes an entry)
// and becomes a map only past subSetMapAt entries.
type subSet struct {
	list []*hub.Subscription
	byCh map[string]*hub.Subscription // nil until list passes subSetMapAt
}

const subSetMapAt = 128

func (s *subSet) get(channel string) *hub.Subscription {
	if s.byCh != nil {
		return s.byCh[channel]
	}
	for _, sub := range s.list {
		if sub.Channel() == channel {
			return sub
		}
	}
	return nil
}

func (s *subSet) len() int { return len(s.list) }

// add records sub; the caller checked that its channel is not in the set.
func (s *subSet) add(sub *hub.Subscription) {
	s.list = append(s.list, sub)
	if s.byCh != nil {
		s.byCh[sub.Channel()] = sub
	} else if len(s.list) > subSetMapAt {
		s.byCh = make(map[string]*hub.Subscription, len(s.list))
		for _, x := range s.list {
			s.byCh[x.Channel()] = x
		}
	}
}

// remove drops sub (a no-op when it is not in the set).
func (s *subSet) remove(sub *hub.Subscription) {
	for i, x := range s.list {
		if x == sub {
			last := len(s.list) - 1
			s.list[i] = s.list[last]
			s.list[last] = nil
			s.list = s.list[:last]
			if s.byCh != nil {
				delete(s.byCh, sub.Channel())
			}
			if len(s.list) == 0 {
				*s = subSet{}
			}
			return
		}
	}
}
