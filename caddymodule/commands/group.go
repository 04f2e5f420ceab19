package commands

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "move-group",
		Usage: "--group <g> --from <admin URL> --to <admin URL> --to-upstream <host:port> --router <admin URL> --pins-file <path> [--drain <duration>]",
		Short: "Moves a placement group of streams from one node to another while clients keep working",
		Long: `
Moves placement group G from node A to node B behind a router that uses
lb_policy durable_streams with a pins_file (README, Scaling):

  1. freezes G on A: A answers writes to G with 503 and Retry-After
     (clients retry); reads go on;
  2. exports G's streams from A and imports them into B, exactly
     (bytes, offsets, producers, closure, TTLs and expiry, forks);
  3. pins G to B in the router's pins file and reloads the router's config
     through its admin API, so new requests for G go to B;
  4. waits --drain for the live reads parked on A to end on their own
     (long-poll timeout; SSE reconnect interval);
  5. deletes G's streams on A and lifts the freeze there.

--from and --to are the nodes' Caddy admin endpoints, --router the
router's; --to-upstream is B as the router's reverse_proxy names it.
If a step before 3 fails, G stays on A (unfrozen) and B drops its copy.

	$ durable-streams-server move-group --group tenant-7 \
	    --from http://10.0.0.1:2019 --to http://10.0.0.2:2019 \
	    --to-upstream 10.0.0.2:8080 --router http://127.0.0.1:2019 \
	    --pins-file /etc/caddy/pins.txt --drain 35s
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("group", "", "The placement group to move (required)")
			cmd.Flags().String("from", "", "Admin endpoint of the node that holds the group (required)")
			cmd.Flags().String("to", "", "Admin endpoint of the node that will hold it (required)")
			cmd.Flags().String("to-upstream", "", "The new node as the router's upstream, host:port (required)")
			cmd.Flags().String("router", "", "Admin endpoint of the router (required)")
			cmd.Flags().String("pins-file", "", "The router's pins_file (required)")
			cmd.Flags().Duration("drain", 30*time.Second, "How long live reads parked on the old node may take to end")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdMoveGroup)
		},
	})
}

func cmdMoveGroup(fl caddycmd.Flags) (int, error) {
	m := groupMove{
		group: fl.String("group"), from: fl.String("from"), to: fl.String("to"),
		toUpstream: fl.String("to-upstream"), router: fl.String("router"),
		pinsFile: fl.String("pins-file"), drain: fl.Duration("drain"),
		client: &http.Client{Timeout: 10 * time.Minute},
		log:    func(format string, a ...any) { fmt.Printf("move-group: "+format+"\n", a...) },
	}
	for name, v := range map[string]string{"group": m.group, "from": m.from, "to": m.to,
		"to-upstream": m.toUpstream, "router": m.router, "pins-file": m.pinsFile} {
		if v == "" {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--%s is required", name)
		}
	}
	if err := m.run(); err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	return caddy.ExitCodeSuccess, nil
}

type groupMove struct {
	group, from, to, toUpstream, router, pinsFile string
	drain                                         time.Duration
	client                                        *http.Client
	log                                           func(format string, a ...any)
}

func (m *groupMove) run() error {
	start := time.Now()
	q := "?group=" + url.QueryEscape(m.group)
	if err := m.targetEmpty(); err != nil {
		return err
	}
	if _, err := m.call(http.MethodPost, m.from, "/durable-streams/freeze"+q, nil); err != nil {
		return fmt.Errorf("freezing group %q on %s: %w", m.group, m.from, err)
	}
	m.log("writes to group %q frozen on %s", m.group, m.from)
	frozenAt := time.Now()
	export, err := m.call(http.MethodGet, m.from, "/durable-streams/export"+q, nil)
	if err != nil {
		return m.undo(fmt.Errorf("exporting group %q from %s: %w", m.group, m.from, err), false)
	}
	res, err := m.call(http.MethodPost, m.to, "/durable-streams/import", export)
	if err != nil {
		// An import adds nothing unless every path is free, or stops at a
		// storage failure: B's copy (if any) is left for the operator.
		return m.undo(fmt.Errorf("importing group %q into %s: %w", m.group, m.to, err), false)
	}
	m.log("copied %d bytes of exported streams to %s: %s", len(export), m.to, strings.TrimSpace(string(res)))
	if err := m.repin(); err != nil {
		return m.undo(fmt.Errorf("pointing the router at %s for group %q: %w", m.toUpstream, m.group, err), true)
	}
	m.log("router %s now sends group %q to %s (writes refused for %v)", m.router, m.group, m.toUpstream,
		time.Since(frozenAt).Round(time.Millisecond))
	if m.drain > 0 {
		m.log("waiting %v for live reads on %s to end", m.drain, m.from)
		time.Sleep(m.drain)
	}
	res, err = m.call(http.MethodPost, m.from, "/durable-streams/forget"+q, nil)
	if err != nil {
		return fmt.Errorf("group %q is served by %s now, but deleting it on %s failed (retry: POST %s/durable-streams/forget%s): %w",
			m.group, m.to, m.from, m.from, q, err)
	}
	if _, err := m.call(http.MethodPost, m.from, "/durable-streams/unfreeze"+q, nil); err != nil {
		return fmt.Errorf("unfreezing group %q on %s: %w", m.group, m.from, err)
	}
	m.log("%s forgot group %q: %s; moved in %v", m.from, m.group, strings.TrimSpace(string(res)),
		time.Since(start).Round(time.Millisecond))
	return nil
}

// emptyExport is the export of a group with no stream (native/group_move.cc).
const emptyExportLen = len("DSGROUP1") + 8

// targetEmpty checks that B holds no stream of the group, so that undoing
// a failed move there (forget) can only drop what the move copied.
func (m *groupMove) targetEmpty() error {
	q := "?group=" + url.QueryEscape(m.group)
	if _, err := m.call(http.MethodPost, m.to, "/durable-streams/freeze"+q, nil); err != nil {
		return fmt.Errorf("checking %s: %w", m.to, err)
	}
	export, err := m.call(http.MethodGet, m.to, "/durable-streams/export"+q, nil)
	if _, uerr := m.call(http.MethodPost, m.to, "/durable-streams/unfreeze"+q, nil); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", m.to, err)
	}
	if len(export) != emptyExportLen {
		return fmt.Errorf("%s already holds streams of group %q: nothing moved", m.to, m.group)
	}
	return nil
}

// undo puts things back after a failure before the router switched: B
// drops what it imported, A takes writes again.
func (m *groupMove) undo(cause error, imported bool) error {
	q := "?group=" + url.QueryEscape(m.group)
	var errs []error
	if imported {
		for _, op := range []string{"freeze", "forget", "unfreeze"} {
			if _, err := m.call(http.MethodPost, m.to, "/durable-streams/"+op+q, nil); err != nil {
				errs = append(errs, fmt.Errorf("dropping the copy on %s (%s): %w", m.to, op, err))
				break
			}
		}
	}
	if _, err := m.call(http.MethodPost, m.from, "/durable-streams/unfreeze"+q, nil); err != nil {
		errs = append(errs, fmt.Errorf("unfreezing on %s: %w", m.from, err))
	}
	if len(errs) == 0 {
		m.log("group %q stays on %s", m.group, m.from)
	}
	return errors.Join(append([]error{cause}, errs...)...)
}

// repin writes "<group> <upstream>" into the pins file (replacing the
// group's line, keeping the others) and has the router reload its config,
// which reads the file again.
func (m *groupMove) repin() error {
	old, err := os.ReadFile(m.pinsFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(old))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(strings.SplitN(line, "#", 2)[0])
		if len(fields) >= 1 && fields[0] == m.group {
			continue
		}
		out.WriteString(line + "\n")
	}
	fmt.Fprintf(&out, "%s %s\n", m.group, m.toUpstream)
	tmp := filepath.Join(filepath.Dir(m.pinsFile), "."+filepath.Base(m.pinsFile)+".tmp")
	if err := os.WriteFile(tmp, out.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, m.pinsFile); err != nil {
		return err
	}
	config, err := m.call(http.MethodGet, m.router, "/config/", nil)
	if err != nil {
		return fmt.Errorf("reading the router's config: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, strings.TrimSuffix(m.router, "/")+"/load", bytes.NewReader(config))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// The config is the same; the pins file is not: reload anyway.
	req.Header.Set("Cache-Control", "must-revalidate")
	return m.do(req, nil)
}

func (m *groupMove) call(method, base, path string, body []byte) ([]byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(base, "/")+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	var out []byte
	err = m.do(req, &out)
	return out, err
}

func (m *groupMove) do(req *http.Request, out *[]byte) error {
	res, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		var apiErr struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &apiErr) == nil && apiErr.Error != "" {
			return fmt.Errorf("%s %s: %d: %s", req.Method, req.URL, res.StatusCode, apiErr.Error)
		}
		return fmt.Errorf("%s %s: %d: %s", req.Method, req.URL, res.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil {
		*out = data
	}
	return nil
}
