package caddymodule

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// Keep-alive for taken-over long-polls.
//
// A long-poll client re-polls at once on the same connection. Closing the
// connection after each answer would cost a TCP handshake and a new
// net/http connection per poll (and under a fan-out, thousands at once).
// So the handler keeps its hijacked net.Conn, gives the engine a duplicate
// of the socket and a return tag; the engine writes the answer without
// Connection: close and hands the tag back (native.SetReturnHandler). The
// connection then goes back to the http.Server that served the request,
// through a listener of ours on which that server also serves
// (http.Server.Serve may run on several listeners): it reads the next
// request there exactly as after any keep-alive answer, through the whole
// middleware chain. A tag the engine returns for closing (client gone,
// engine closing) closes the connection.

// kept are the connections the engine is answering, by return tag;
// keptLongPolls counts them (live_sessions{mode="long_poll"}).
var (
	kept          sync.Map // uint64 -> keptConn
	keptLongPolls atomic.Int64
)

type keptConn struct {
	conn  net.Conn
	home  *returnListener
	lease *engineLease // held until the answer is out, as a request holds it
}

func init() { native.SetReturnHandler(connectionReturned) }

// connectionReturned runs on an engine thread: it must not block.
func connectionReturned(tag uint64, serveNext bool) {
	v, ok := kept.LoadAndDelete(tag)
	if !ok {
		return
	}
	keptLongPolls.Add(-1)
	k := v.(keptConn)
	if serveNext {
		noteAnswered()
	}
	if !serveNext || !k.home.push(k.conn) {
		_ = k.conn.Close()
	}
	k.lease.doneOnEngineThread()
}

// doneOnEngineThread is done for a caller on an engine thread: the last
// hold closes the engine, which joins that thread, so only then does the
// release move to a goroutine (one per return was 1.5% of the server's CPU
// in a long-poll fan-out).
func (l *engineLease) doneOnEngineThread() {
	if l != nil && l.n.Add(-1) == 0 {
		go l.release()
	}
}

// keepForReturn registers conn, hijacked from a request that srv served,
// for the engine to give back, and returns its tag; 0 if it cannot go back
// (no server known, or the server is shutting down).
//
// The request's hold on its engine (lease) is taken again until the engine
// gives the connection back, so a reload to another data_dir keeps the old
// engine open until the answer is out, as for a request a goroutine serves.
func keepForReturn(srv *http.Server, conn net.Conn, lease *engineLease) uint64 {
	if srv == nil {
		return 0
	}
	home := returnListenerFor(srv)
	if home == nil {
		return 0
	}
	tag := native.NewReturnTag()
	lease.hold()
	kept.Store(tag, keptConn{conn: conn, home: home, lease: lease})
	keptLongPolls.Add(1)
	return tag
}

// forget drops a registration the engine never took (the adoption failed).
func forget(tag uint64) {
	if v, ok := kept.LoadAndDelete(tag); ok {
		keptLongPolls.Add(-1)
		v.(keptConn).lease.done()
	}
}

// returnListener is a net.Listener whose connections are the ones the
// engine gives back, for one http.Server.
type returnListener struct {
	srv  *http.Server
	addr net.Addr

	mu     sync.Mutex
	queue  []net.Conn
	ready  chan struct{} // signalled when queue becomes non-empty
	closed bool
}

var returnListeners sync.Map // *http.Server -> *returnListener

func returnListenerFor(srv *http.Server) *returnListener {
	if v, ok := returnListeners.Load(srv); ok {
		l := v.(*returnListener)
		l.mu.Lock()
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return nil
		}
		return l
	}
	l := &returnListener{srv: srv, addr: returnAddr{}, ready: make(chan struct{}, 1)}
	if v, loaded := returnListeners.LoadOrStore(srv, l); loaded {
		return v.(*returnListener)
	}
	go func() {
		// Returns when the server shuts down (it closes every listener it
		// serves) or at once if it already has.
		_ = srv.Serve(l)
		_ = l.Close()
	}()
	return l
}

// push queues conn for Accept; false if the listener is closed.
func (l *returnListener) push(conn net.Conn) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, conn)
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
	return true
}

func (l *returnListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, net.ErrClosed
		}
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			if len(l.queue) == 0 {
				l.queue = nil
			}
			l.mu.Unlock()
			return c, nil
		}
		l.mu.Unlock()
		<-l.ready
	}
}

func (l *returnListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	queued := l.queue
	l.queue = nil
	l.mu.Unlock()
	returnListeners.CompareAndDelete(l.srv, l)
	for _, c := range queued {
		_ = c.Close()
	}
	select {
	case l.ready <- struct{}{}:
	default:
	}
	return nil
}

func (l *returnListener) Addr() net.Addr { return l.addr }

// returnAddr names the return listener (net/http only logs it).
type returnAddr struct{}

func (returnAddr) Network() string { return "durable-streams-return" }
func (returnAddr) String() string  { return "durable-streams-return" }
