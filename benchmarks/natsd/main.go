// Command natsd runs NATS with JetStream, embedded from the nats-server Go
// module, for local clusters and benchmarks on machines without the
// nats-server binary. In production run the official nats-server.
//
//	go run ./benchmarks/natsd -port 4222                # one server
//	go run ./benchmarks/natsd -servers 3 -sync always   # a three-server cluster in this process
//	go run ./benchmarks/natsd -servers 3 -only 1        # member 1 of it alone, to kill and restart
//
// With -servers N, member i listens for clients on -port+i and for routes
// on -cluster-port+i, keeps its store in <store>/n<i>, and routes to every
// other member; three processes started with -only 0, 1 and 2 form the
// same cluster as one started without -only.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

func main() {
	var (
		host        = flag.String("host", "127.0.0.1", "listen host")
		port        = flag.Int("port", 4222, "client port (of member 0 with -servers)")
		store       = flag.String("store", "", "JetStream store directory (default: a temporary directory)")
		servers     = flag.Int("servers", 1, "members of the cluster; 1 runs a single server without routes")
		clusterPort = flag.Int("cluster-port", 6222, "route port of member 0 with -servers")
		only        = flag.Int("only", -1, "with -servers, run only this member (0-based), so it can be killed on its own")
		sync        = flag.String("sync", "", `JetStream sync_interval: "always" (fsync before every ack) or a duration; empty keeps NATS's default (2m)`)
	)
	flag.Parse()
	if *servers < 1 || *only >= *servers {
		log.Fatalf("natsd: -servers must be at least 1 and -only below it")
	}
	dir := *store
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "natsd-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	var routes []*url.URL
	if *servers > 1 {
		for i := range *servers {
			routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("%s:%d", *host, *clusterPort+i)})
		}
	}
	var run []*natsserver.Server
	for i := range *servers {
		if *only >= 0 && i != *only {
			continue
		}
		opts := &natsserver.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       *host,
			Port:       *port + i,
			JetStream:  true,
			StoreDir:   dir,
			NoSigs:     true,
		}
		if *servers > 1 {
			opts.StoreDir = filepath.Join(dir, opts.ServerName)
			opts.Cluster = natsserver.ClusterOpts{Name: "herald", Host: *host, Port: *clusterPort + i}
			opts.Routes = routes
		}
		switch *sync {
		case "":
		case "always":
			opts.SyncAlways = true
		default:
			d, err := time.ParseDuration(*sync)
			if err != nil || d <= 0 {
				log.Fatalf("natsd: -sync %q: want always or a positive duration", *sync)
			}
			opts.SyncInterval = d
		}
		srv, err := natsserver.NewServer(opts)
		if err != nil {
			log.Fatal(err)
		}
		srv.ConfigureLogger()
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			log.Fatalf("natsd: %s did not start", opts.ServerName)
		}
		log.Printf("NATS %s with JetStream on nats://%s:%d, store %s, sync %q", opts.ServerName, *host, opts.Port, opts.StoreDir, *sync)
		run = append(run, srv)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	for _, srv := range run {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}
