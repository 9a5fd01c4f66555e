package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// TestDocumentedNATSConfig loads the three-server NATS configuration of
// docs/deployment.md with nats-server's own parser: it must be valid and
// set what the page says it sets.
func TestDocumentedNATSConfig(t *testing.T) {
	doc, err := os.ReadFile("../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Replicated NATS")
	if !ok {
		t.Fatal(`docs/deployment.md has no "Replicated NATS" section`)
	}
	_, block, ok := strings.Cut(rest, "```conf\n")
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatal("the Replicated NATS section has no ```conf block")
	}
	path := filepath.Join(t.TempDir(), "herald.conf")
	if err := os.WriteFile(path, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects the documented configuration: %v", err)
	}
	if !opts.JetStream || !opts.SyncAlways || opts.StoreDir != "/var/lib/nats" {
		t.Errorf("JetStream %v, sync always %v, store %q: want JetStream on disk in /var/lib/nats with sync_interval: always", opts.JetStream, opts.SyncAlways, opts.StoreDir)
	}
	if opts.Cluster.Name != "herald" || opts.Cluster.Port != 6222 || len(opts.Routes) != 3 || opts.ServerName != "n1" || opts.Port != 4222 {
		t.Errorf("cluster %q port %d with %d routes, server %q on %d: want cluster herald on 6222 routing to three servers, n1 on 4222",
			opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes), opts.ServerName, opts.Port)
	}
}
