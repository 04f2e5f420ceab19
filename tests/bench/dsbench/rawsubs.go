package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// The fan-out's subscribers on raw sockets read by a few epoll loops on
// locked OS threads: no net/http and no goroutine per subscriber.
//
// Why: on a 2-core machine the load generator shares the cores with the
// server under test, so its appetite is part of every server's p99. Through
// net/http (a netpoller wake, a goroutine switch, the body and scanner layers
// per delivery) 5,000 SSE subscribers took 1.3 s of client CPU for a run of
// ten appends; these loops take 0.5 s. The loops look for ready sockets
// every -poll (250 µs) rather than blocking in epoll_wait: two blocking
// loops were woken by nearly every send and, competing with the server's
// senders for the cores, gave a worse p99 than net/http did. Polling bounds
// the error of a delivery time by the interval.
//
// An SSE subscriber holds one response open and resumes from the last
// control event's streamNextOffset if the server ends it. A long-poll
// subscriber sends its next request on the same connection as soon as an
// answer is in, from the answer's Stream-Next-Offset and Stream-Cursor,
// and counts as in place once its first request is written (as the net/http
// client does).

// rawSubs runs the subscribers of one fan-out over raw sockets.
type rawSubs struct {
	f    *fanout
	sse  bool // else long-poll
	ip   net.IP
	port int
	host string        // Host header
	path string        // the stream's path
	poll time.Duration // 0: block in epoll_wait
}

type rawSub struct {
	s      int
	fd     int
	offset string
	cursor string
	wire   respWire
	lines  lineSplitter // SSE: the event stream's lines
	body   []byte       // long-poll: the answer's body
	joined bool
	errors int // long-poll answers with an unexpected status
}

// maxRawSubErrors ends a long-poll subscriber that keeps getting refused,
// so that a broken server cannot make the loop spin.
const maxRawSubErrors = 100

func newRawSubs(f *fanout, sse bool) (*rawSubs, error) {
	u, err := url.Parse(f.url)
	if err != nil {
		return nil, err
	}
	ta, err := net.ResolveTCPAddr("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", u.Host, err)
	}
	return &rawSubs{f: f, sse: sse, ip: ta.IP, port: ta.Port, host: u.Host, path: u.EscapedPath()}, nil
}

// sockaddr builds the server's address for one connect: syscall encodes
// into the Sockaddr itself, so dialers must not share one.
func (r *rawSubs) sockaddr() (syscall.Sockaddr, int) {
	if ip4 := r.ip.To4(); ip4 != nil {
		sa := &syscall.SockaddrInet4{Port: r.port}
		copy(sa.Addr[:], ip4)
		return sa, syscall.AF_INET
	}
	sa := &syscall.SockaddrInet6{Port: r.port}
	copy(sa.Addr[:], r.ip.To16())
	return sa, syscall.AF_INET6
}

// request is the subscriber's next request.
func (r *rawSubs) request(sub *rawSub) []byte {
	q := "?offset=" + url.QueryEscape(sub.offset)
	accept := ""
	if r.sse {
		q += "&live=sse"
		accept = "Accept: text/event-stream\r\n"
	} else {
		q += "&live=long-poll"
		if sub.cursor != "" {
			q += "&cursor=" + url.QueryEscape(sub.cursor)
		}
	}
	return []byte("GET " + r.path + q + " HTTP/1.1\r\nHost: " + r.host + "\r\n" + accept + "User-Agent: dsbench\r\n\r\n")
}

// writeAll writes b to fd, waiting out a full socket (rare: requests are
// small).
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			time.Sleep(100 * time.Microsecond)
		case err != nil:
			return err
		default:
			b = b[n:]
		}
	}
	return nil
}

// connect opens a non-blocking socket to the server for sub and writes its
// request.
func (r *rawSubs) connect(sub *rawSub) error {
	addr, family := r.sockaddr()
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	for {
		err = syscall.Connect(fd, addr)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		syscall.Close(fd)
		return fmt.Errorf("connect: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("set non-blocking: %w", err)
	}
	if err := writeAll(fd, r.request(sub)); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("write request: %w", err)
	}
	sub.fd = fd
	if !r.sse {
		r.f.joined(&sub.joined)
	}
	return nil
}

// run connects every subscriber (dialConc at a time), then reads them on
// `loops` epoll loops until ctx ends. It returns when every loop is done.
func (r *rawSubs) run(ctx context.Context, subs, loops, dialConc int, offset string) {
	loops = max(1, min(loops, subs))
	eps := make([]int, loops)
	for i := range eps {
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			r.f.noteErr("epoll_create1: " + err.Error())
			r.f.failed.Add(int64(subs))
			for _, e := range eps[:i] {
				syscall.Close(e)
			}
			return
		}
		eps[i] = ep
	}
	// Each loop's subscribers by socket; the dialers add to it while the
	// loops run, so every access holds mu.
	table := make([]map[int]*rawSub, loops)
	for i := range table {
		table[i] = make(map[int]*rawSub, subs/loops+1)
	}
	var mu sync.Mutex // guards table
	sem := make(chan struct{}, dialConc)
	var dials sync.WaitGroup
	for s := range subs {
		dials.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; dials.Done() }()
			sub := &rawSub{s: s, offset: offset}
			if ctx.Err() != nil {
				r.f.failed.Add(1)
				return
			}
			if err := r.connect(sub); err != nil {
				r.f.noteErr(err.Error())
				r.f.failed.Add(1)
				return
			}
			r.add(eps[s%loops], table[s%loops], &mu, sub)
		}()
	}
	var wg sync.WaitGroup
	for i := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, eps[i], table[i], &mu)
		}()
	}
	dials.Wait()
	wg.Wait()
	for i, ep := range eps {
		for fd := range table[i] {
			syscall.Close(fd)
		}
		syscall.Close(ep)
	}
}

// add puts a connected subscriber in its loop's table and epoll set.
func (r *rawSubs) add(ep int, subs map[int]*rawSub, mu *sync.Mutex, sub *rawSub) {
	mu.Lock()
	subs[sub.fd] = sub
	mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(sub.fd)}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, sub.fd, &ev); err != nil {
		r.f.noteErr("epoll_ctl: " + err.Error())
	}
}

// drop takes a subscriber's socket out of its loop and closes it (out of
// the table first: a dialer may get the same number).
func drop(subs map[int]*rawSub, mu *sync.Mutex, sub *rawSub) {
	mu.Lock()
	delete(subs, sub.fd)
	mu.Unlock()
	syscall.Close(sub.fd)
}

// loop reads ready sockets until ctx ends.
func (r *rawSubs) loop(ctx context.Context, ep int, subs map[int]*rawSub, mu *sync.Mutex) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		wait := 50
		if r.poll > 0 {
			wait = 0
		}
		n, err := syscall.EpollWait(ep, events, wait)
		if err != nil && err != syscall.EINTR {
			r.f.noteErr("epoll_wait: " + err.Error())
			return
		}
		for _, ev := range events[:max(n, 0)] {
			mu.Lock()
			sub := subs[int(ev.Fd)]
			mu.Unlock()
			if sub == nil {
				continue
			}
			if err := r.service(sub, buf); err != nil {
				drop(subs, mu, sub)
				r.retry(ctx, ep, subs, mu, sub, err)
			}
		}
		if r.poll > 0 && n < len(events) {
			time.Sleep(r.poll)
		}
	}
}

// errReconnect ends a connection that did its job (the server ended the
// SSE response, or closes after a long-poll answer): the subscriber goes on
// over a new one.
var errReconnect = errors.New("connection done")

// errBroken wraps what makes a reconnect pointless (a malformed or refused
// response, a subscriber that keeps being refused).
type errBroken struct{ err error }

func (e errBroken) Error() string { return e.err.Error() }

// service reads what one socket has: one read per readiness report, since
// the epoll is level-triggered and a partial read is reported again. A
// non-nil error means the connection is finished.
func (r *rawSubs) service(sub *rawSub, buf []byte) error {
	n, err := syscall.Read(sub.fd, buf)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return nil
	case err != nil:
		return err
	case n == 0:
		return errors.New("server closed the connection")
	}
	p := buf[:n]
	for len(p) > 0 {
		used, err := sub.wire.feed(p, func(b []byte) { r.onBody(sub, b) })
		p = p[used:]
		if err != nil {
			return errBroken{err}
		}
		if r.sse && sub.wire.inBody && !sub.joined {
			if sub.wire.status != 200 {
				return errBroken{fmt.Errorf("SSE status %d", sub.wire.status)}
			}
			r.f.joined(&sub.joined)
		}
		if !sub.wire.done {
			continue
		}
		if r.sse {
			return errReconnect // the server ended the stream
		}
		if err := r.answered(sub); err != nil {
			return err
		}
		if len(p) > 0 {
			return errBroken{errors.New("bytes after a long-poll answer")}
		}
		if err := writeAll(sub.fd, r.request(sub)); err != nil {
			return err
		}
		r.f.lastRequestAt.Store(int64(time.Since(r.f.start)))
	}
	return nil
}

func (r *rawSubs) onBody(sub *rawSub, b []byte) {
	if !r.sse {
		sub.body = append(sub.body, b...)
		return
	}
	sub.lines.write(b, func(line []byte) {
		r.f.stamp(sub.s, line)
		sub.offset = resumeOffset(line, sub.offset)
	})
}

// answered takes in a complete long-poll answer and readies the wire for
// the next one. It returns errReconnect if the server closes after it.
func (r *rawSubs) answered(sub *rawSub) error {
	switch sub.wire.status {
	case 200:
		r.f.stamp(sub.s, sub.body)
	case 204:
	default:
		r.f.noteErr(fmt.Sprintf("long-poll status %d", sub.wire.status))
		if sub.errors++; sub.errors >= maxRawSubErrors {
			return errBroken{fmt.Errorf("%d long-poll answers with an error status", sub.errors)}
		}
	}
	if sub.wire.nextOffset != "" {
		sub.offset = sub.wire.nextOffset
	}
	if sub.wire.cursor != "" {
		sub.cursor = sub.wire.cursor
	}
	closeAfter := sub.wire.closeAfter
	sub.wire = respWire{}
	sub.body = sub.body[:0]
	if closeAfter {
		return errReconnect
	}
	return nil
}

// retry follows a finished connection: a subscriber that never got in, or
// whose response was broken, is done; any other reconnects from where it
// was.
func (r *rawSubs) retry(ctx context.Context, ep int, subs map[int]*rawSub, mu *sync.Mutex, sub *rawSub, cause error) {
	var broken errBroken
	if !sub.joined || errors.As(cause, &broken) {
		r.f.noteErr(cause.Error())
		if !sub.joined {
			r.f.failed.Add(1)
		}
		return
	}
	for attempt := 0; attempt < 100 && ctx.Err() == nil; attempt++ {
		r.f.reconnects.Add(1)
		next := &rawSub{s: sub.s, offset: sub.offset, cursor: sub.cursor, joined: true, errors: sub.errors}
		if err := r.connect(next); err != nil {
			r.f.noteErr(err.Error())
			time.Sleep(100 * time.Millisecond)
			continue
		}
		r.add(ep, subs, mu, next)
		return
	}
}
