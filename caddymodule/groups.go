package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// Moving a placement group between nodes (README, Scaling). While a group
// is frozen, this process refuses writes to it (PUT, POST, DELETE) with 503
// and Retry-After, so that its streams can be exported unchanged; reads go
// on. Freezing waits for the writes already in flight, so an export taken
// after the freeze returns holds every acknowledged write. The frozen set
// belongs to the process: it survives config reloads, not restarts.
//
// The operator drives a move through Caddy's admin API (this module), on
// the admin endpoint of each node:
//
//	POST /durable-streams/freeze?group=G      refuse writes to G (waits for those in flight)
//	POST /durable-streams/unfreeze?group=G
//	GET  /durable-streams/export?group=G      the group's streams (G must be frozen)
//	POST /durable-streams/import              body: an export; adds its streams
//	POST /durable-streams/forget?group=G      deletes G's streams (G must be frozen)
//	GET  /durable-streams/frozen              the frozen groups, as JSON
//
// With more than one engine in the process, storage=<data_dir> (or
// memory:<stream_root>) names one.

func init() {
	caddy.RegisterModule(GroupAdmin{})
}

// writeGate orders writes against freezes: every write holds it for reading
// while it runs, a freeze for writing while it adds its group, so when the
// freeze returns no write to the group is in flight and none will start.
var (
	writeGate sync.RWMutex
	frozen    atomic.Pointer[map[string]bool] // copy on write, under writeGate
)

// freezeRetryAfter is the Retry-After of a write refused during a move:
// moves take about a second per GiB the group holds.
const freezeRetryAfter = "1"

// enterWrite admits a write under the gate: it returns the function that
// ends it, or nil after answering 503 because the request's group is
// frozen. Reads pass straight through (nil release, true).
func (h *Handler) enterWrite(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	switch r.Method {
	case http.MethodPut, http.MethodPost, http.MethodDelete:
	default:
		return nil, true
	}
	writeGate.RLock()
	if m := frozen.Load(); m != nil && len(*m) > 0 {
		root := h.StreamRoot
		if root == "" {
			root = DefaultStreamRoot
		}
		group := placementGroup(root, r.URL.Path, h.groupDepth())
		if (*m)[group] {
			writeGate.RUnlock()
			hdr := w.Header()
			hdr.Set("Content-Type", "text/plain; charset=utf-8")
			hdr.Set("Cache-Control", "no-store")
			hdr.Set("Retry-After", freezeRetryAfter)
			if r.Header.Get("Origin") != "" && len(hdr["Access-Control-Allow-Origin"]) == 0 {
				hdr.Set("Access-Control-Allow-Origin", "*")
				hdr.Set("Access-Control-Expose-Headers", "Retry-After")
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "service unavailable: group %q is moving to another node; retry\n", group)
			return nil, false
		}
	}
	return writeGate.RUnlock, true
}

// setFrozen adds or removes group from the frozen set; adding returns
// once no write to it is in flight.
func setFrozen(group string, on bool) {
	writeGate.Lock()
	defer writeGate.Unlock()
	next := map[string]bool{}
	if m := frozen.Load(); m != nil {
		for g := range *m {
			next[g] = true
		}
	}
	if on {
		next[group] = true
	} else {
		delete(next, group)
	}
	frozen.Store(&next)
}

func isFrozen(group string) bool {
	m := frozen.Load()
	return m != nil && (*m)[group]
}

// GroupAdmin is the admin API's /durable-streams/ routes.
type GroupAdmin struct{}

// CaddyModule returns the Caddy module information.
func (GroupAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.durable_streams",
		New: func() caddy.Module { return new(GroupAdmin) },
	}
}

// Routes returns the admin routes.
func (a GroupAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/durable-streams/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (a GroupAdmin) serve(w http.ResponseWriter, r *http.Request) error {
	op := strings.TrimPrefix(r.URL.Path, "/durable-streams/")
	group := r.URL.Query().Get("group")
	needGroup := func() error {
		if group == "" {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("the group query parameter is required")}
		}
		return nil
	}
	wantMethod := func(m string) error {
		if r.Method != m {
			return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("%s wants %s", op, m)}
		}
		return nil
	}
	reply := func(v any) error {
		w.Header().Set("Content-Type", "application/json")
		return json.NewEncoder(w).Encode(v)
	}
	switch op {
	case "frozen":
		if err := wantMethod(http.MethodGet); err != nil {
			return err
		}
		groups := []string{}
		if m := frozen.Load(); m != nil {
			for g := range *m {
				groups = append(groups, g)
			}
		}
		sort.Strings(groups)
		return reply(map[string]any{"frozen": groups})
	case "freeze", "unfreeze":
		if err := errors.Join(wantMethod(http.MethodPost), needGroup()); err != nil {
			return err
		}
		setFrozen(group, op == "freeze")
		return reply(map[string]any{"group": group, "frozen": op == "freeze"})
	case "export", "forget":
		m := http.MethodGet
		if op == "forget" {
			m = http.MethodPost
		}
		if err := errors.Join(wantMethod(m), needGroup()); err != nil {
			return err
		}
		if !isFrozen(group) {
			return caddy.APIError{HTTPStatus: http.StatusConflict, Err: fmt.Errorf("group %q is not frozen: freeze it first", group)}
		}
		e, err := adminEngine(r)
		if err != nil {
			return err
		}
		if op == "export" {
			data, err := e.ExportGroup(group)
			if err != nil {
				return apiError(err)
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			_, err = w.Write(data)
			return err
		}
		n, err := e.ForgetGroup(group)
		if err != nil {
			return apiError(err)
		}
		return reply(map[string]any{"group": group, "forgotten": n})
	case "import":
		if err := wantMethod(http.MethodPost); err != nil {
			return err
		}
		e, err := adminEngine(r)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("reading the export: %w", err)}
		}
		n, err := e.ImportStreams(data)
		if err != nil {
			return apiError(err)
		}
		return reply(map[string]any{"imported": n})
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no admin operation %q", op)}
}

// apiError maps an engine error: a bad export or an existing stream is the
// caller's (400), anything else the server's (500).
func apiError(err error) error {
	status := http.StatusInternalServerError
	if errors.Is(err, native.CodeInvalidArgument) {
		status = http.StatusBadRequest
	}
	return caddy.APIError{HTTPStatus: status, Err: err}
}

// adminEngine is the engine the request names with storage=, or the only
// open one.
func adminEngine(r *http.Request) (*native.Engine, error) {
	want := r.URL.Query().Get("storage")
	var found *native.Engine
	var keys []string
	rangeEngines(func(key string, e *native.Engine) {
		keys = append(keys, key)
		if want == "" || key == want {
			found = e
		}
	})
	switch {
	case want == "" && len(keys) > 1:
		sort.Strings(keys)
		return nil, caddy.APIError{HTTPStatus: http.StatusBadRequest,
			Err: fmt.Errorf("several engines are open (%s): name one with storage=", strings.Join(keys, ", "))}
	case found == nil:
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no open engine %q", want)}
	}
	return found, nil
}

// Interface guards
var _ caddy.AdminRouter = GroupAdmin{}
