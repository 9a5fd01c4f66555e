package cluster

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herald-ws/herald/admin"
	"github.com/herald-ws/herald/internal/testutil"
	"github.com/herald-ws/herald/server"
)

// TestAdminListsTheClusterNodes: every node's admin stats list every node
// of the cluster (announced through NATS), and a node that stops drops out
// of the others' lists within the directory's TTL.
func TestAdminListsTheClusterNodes(t *testing.T) {
	ns := startNATS(t)
	a, b, c := startNode(t, ns, 10), startNode(t, ns, 10), startNode(t, ns, 10)
	want := func(nodes ...*server.Node) string {
		var addrs []string
		for _, n := range nodes {
			addrs = append(addrs, n.Addr().String())
		}
		sort.Strings(addrs)
		return strings.Join(addrs, ",")
	}
	listed := func(n *server.Node) string {
		status, body, err := testutil.APIRequest(n, http.MethodGet, "/api/admin/stats", "", nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("admin stats: %d %v", status, err)
		}
		var s admin.Snapshot
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatal(err)
		}
		if len(s.Nodes) == 0 || s.Nodes[0].ClientAddr != n.Addr().String() {
			t.Fatalf("nodes %+v: want this node first", s.Nodes)
		}
		var addrs []string
		for _, o := range s.Nodes {
			addrs = append(addrs, o.ClientAddr)
		}
		sort.Strings(addrs)
		return strings.Join(addrs, ",")
	}
	waitListed := func(n *server.Node, wantList string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		got := listed(n)
		for got != wantList && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			got = listed(n)
		}
		if got != wantList {
			t.Fatalf("node %s lists %s, want %s", n.Addr(), got, wantList)
		}
	}
	all := want(a, b, c)
	for _, n := range []*server.Node{a, b, c} {
		waitListed(n, all, 5*time.Second)
	}
	c.Stop()
	// Announcements every second, forgotten after three.
	waitListed(a, want(a, b), 5*time.Second)
	waitListed(b, want(a, b), 5*time.Second)
}
