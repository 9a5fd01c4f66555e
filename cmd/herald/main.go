// Command herald is the Herald push server and its tools.
//
//	herald serve [flags]     run the server
//	herald loadtest [flags]  drive load at a server and measure it
//	herald token [flags]     print a signed client token
//	herald version           print the version
//
// Every flag also reads an environment variable: -max-conns reads
// HERALD_MAX_CONNS. A flag given on the command line wins.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		os.Exit(runServe(args))
	case "token":
		os.Exit(runToken(args))
	case "loadtest":
		os.Exit(runLoadtest(args))
	case "version", "-version", "--version":
		fmt.Println("herald", versionString(), runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
		return
	case "help", "-h", "-help", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "herald: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: herald <command> [flags]

commands:
  serve     run the WebSocket push server (herald serve -h lists its flags)
  loadtest  drive load at a WebSocket server and measure it (herald loadtest -h)
  token     print a signed client token (herald token -secret S -sub USER)
  version   print the version
`)
}
