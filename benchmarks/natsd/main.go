// Command natsd runs a NATS server with JetStream, embedded from the
// nats-server Go module, for local clusters and benchmarks on machines
// without the nats-server binary: `go run ./benchmarks/natsd -port 4222`.
// In production run the official nats-server.
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

func main() {
	var (
		host  = flag.String("host", "127.0.0.1", "listen host")
		port  = flag.Int("port", 4222, "client port")
		store = flag.String("store", "", "JetStream store directory (default: a temporary directory)")
	)
	flag.Parse()
	dir := *store
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "natsd-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	srv, err := natsserver.NewServer(&natsserver.Options{Host: *host, Port: *port, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	srv.ConfigureLogger()
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server did not start")
	}
	log.Printf("NATS with JetStream on nats://%s:%d, store %s", *host, *port, dir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Shutdown()
	srv.WaitForShutdown()
}
