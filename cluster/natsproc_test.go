package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsProcEnv carries a natsProcConfig to a re-executed test binary, which
// then runs one nats-server and nothing else.
const natsProcEnv = "HERALD_TEST_NATS_SERVER"

// natsProcConfig is one member of a NATS cluster run as a child process.
type natsProcConfig struct {
	Name        string   `json:"name"`
	Port        int      `json:"port"`
	ClusterPort int      `json:"cluster_port"`
	Routes      []string `json:"routes"` // nats-route://127.0.0.1:port of every member
	Store       string   `json:"store"`
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(natsProcEnv); cfg != "" {
		os.Exit(runNATSProc(cfg))
	}
	os.Exit(m.Run())
}

// runNATSProc runs one clustered nats-server with JetStream on disk and
// sync_interval: always, until its stdin closes (the test ended, or died)
// or it is killed.
func runNATSProc(text string) int {
	var cfg natsProcConfig
	if err := json.Unmarshal([]byte(text), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "nats child:", err)
		return 2
	}
	var routes []*url.URL
	for _, r := range cfg.Routes {
		u, err := url.Parse(r)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nats child:", err)
			return 2
		}
		routes = append(routes, u)
	}
	srv, err := natsserver.NewServer(&natsserver.Options{
		ServerName: cfg.Name,
		Host:       "127.0.0.1",
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.Store,
		SyncAlways: true,
		Cluster:    natsserver.ClusterOpts{Name: "herald-test", Host: "127.0.0.1", Port: cfg.ClusterPort},
		Routes:     routes,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats child:", err)
		return 1
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		fmt.Fprintln(os.Stderr, "nats child: not ready")
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Shutdown()
	return 0
}

// natsCluster is three nats-servers clustered, each its own process, so a
// member can be killed with SIGKILL: no leadership hand-over, no flush.
type natsCluster struct {
	t       *testing.T
	members []*natsMember
}

type natsMember struct {
	cfg natsProcConfig
	cmd *exec.Cmd
	in  io.WriteCloser
}

func startNATSCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	var routes []string
	for i := range size {
		cp := freePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", cp))
		c.members = append(c.members, &natsMember{cfg: natsProcConfig{
			Name: fmt.Sprintf("n%d", i), Port: freePort(t), ClusterPort: cp, Store: t.TempDir(),
		}})
	}
	for i, m := range c.members {
		m.cfg.Routes = routes
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.members {
			c.kill(i)
		}
	})
	c.waitJetStream(30 * time.Second)
	return c
}

// start (re)starts member i on its ports and store.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	m := c.members[i]
	cfg, _ := json.Marshal(m.cfg)
	m.cmd = exec.Command(os.Args[0], "-test.run=^$")
	m.cmd.Env = append(os.Environ(), natsProcEnv+"="+string(cfg))
	m.cmd.Stdout, m.cmd.Stderr = os.Stderr, os.Stderr
	var err error
	if m.in, err = m.cmd.StdinPipe(); err != nil {
		c.t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
}

// kill sends SIGKILL to member i and reaps it.
func (c *natsCluster) kill(i int) {
	m := c.members[i]
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	_ = m.in.Close()
	m.cmd = nil
}

func (c *natsCluster) url(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.members[i].cfg.Port)
}

// urls lists every member, member first first.
func (c *natsCluster) urls(first int) string {
	s := c.url(first)
	for i := range c.members {
		if i != first {
			s += "," + c.url(i)
		}
	}
	return s
}

// index is the member named name, or -1.
func (c *natsCluster) index(name string) int {
	for i, m := range c.members {
		if m.cfg.Name == name {
			return i
		}
	}
	return -1
}

// jetstream is a client of the whole cluster, for the test's own checks.
func (c *natsCluster) jetstream() jetstream.JetStream {
	c.t.Helper()
	nc, err := nats.Connect(c.urls(0), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return js
}

// waitJetStream waits until the cluster has a JetStream meta leader.
func (c *natsCluster) waitJetStream(within time.Duration) {
	c.t.Helper()
	js := c.jetstream()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("NATS cluster: JetStream not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// streamState is the stream's leader and whether every replica is current.
func streamState(js jetstream.JetStream, stream string) (leader string, current bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", false, err
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return "", false, fmt.Errorf("stream %s has no cluster info", stream)
	}
	current = info.Cluster.Leader != "" && len(info.Cluster.Replicas) > 0
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			current = false
		}
	}
	return info.Cluster.Leader, current, nil
}
