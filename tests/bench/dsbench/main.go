// Command dsbench is the load driver behind `make bench` (tests/bench/run.sh)
// for what wrk cannot express: setting up streams, reading a large stream
// page by page, SSE and long-poll fan-out, many streams, and turning the
// collected results into the table, the Markdown report and the chart data.
//
// Every measuring subcommand appends one JSON record to the file given with
// -out; `dsbench report` reads them back. Every loop is bounded in count and
// in time, and only loopback URLs are accepted.
package main

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

const usage = `usage: dsbench <command> [flags]

commands:
  freeport     print a free TCP port on 127.0.0.1
  gencert      write a self-signed certificate for 127.0.0.1 (TLS scenarios)
  wait         wait until a server answers on its base URL
  setup        create streams and fill them (for a scenario)
  wrkparse     turn wrk's output (stdin) into a result record
  commits      print a data_dir server's group-commit counters (for wrkparse -commits)
  record       write a result record without measuring (unavailable, skipped)
  bigread      catch-up read of a large stream (or file) in chunks: MB/s
  fanout       SSE or long-poll fan-out: delivery latency, RSS, threads
  h2floor      RSS per HTTP/2 stream a bare net/http handler holds open (item 4's floor)
  manystreams  create many streams, then append to random ones
  bodies       concurrent large chunked POSTs: the server's peak RSS growth
  subscribed   many-stream appends with and without pattern subscriptions
  report       print the table, write results.md and the chart data
`

func main() {
	maybeH2FloorChild()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	raiseNofile()
	cmds := map[string]func([]string) error{
		"freeport":    cmdFreePort,
		"gencert":     cmdGenCert,
		"wait":        cmdWait,
		"setup":       cmdSetup,
		"wrkparse":    cmdWrkParse,
		"commits":     cmdCommits,
		"record":      cmdRecord,
		"bigread":     cmdBigRead,
		"fanout":      cmdFanout,
		"h2floor":     cmdH2Floor,
		"manystreams": cmdManyStreams,
		"bodies":      cmdBodies,
		"subscribed":  cmdSubscribed,
		"report":      cmdReport,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "dsbench: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err := cmd(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "dsbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// raiseNofile lifts the soft RLIMIT_NOFILE to the hard limit: fan-out opens
// one connection per subscriber.
func raiseNofile() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

func nofileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}

func cmdFreePort([]string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}
