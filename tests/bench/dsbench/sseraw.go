package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The raw SSE subscriber side of the fan-out: plain sockets read by a few
// epoll loops on locked OS threads, no net/http and no goroutine per
// subscriber.
//
// Why: on a 2-core machine the load generator shares the cores with the
// server under test, so its appetite is part of every server's p99. Through
// net/http (a netpoller wake, a goroutine switch, the body and scanner layers
// per delivery) 5,000 subscribers took 1.3 s of client CPU for a run of ten
// appends; these loops take 0.5 s. The loops look for ready sockets every
// -sse-poll (250 µs) rather than blocking in epoll_wait: two blocking loops
// were woken by nearly every send and, competing with the server's senders
// for the cores, gave a worse p99 than net/http did. Polling bounds the
// error of a delivery time by the interval.

// sseWire decodes one SSE response as bytes arrive: the HTTP/1.1 status
// line and headers, then the body (chunked or not), then the event stream's
// lines. It is transport-free so that it can be fed any split of the bytes.
type sseWire struct {
	header  []byte // header bytes until the blank line
	inBody  bool
	chunked bool
	status  int

	// Chunked framing: size line, chunk data, the CRLF after the data.
	sizeLine  []byte
	chunkLeft int
	crlfLeft  int
	ended     bool // the last chunk (size 0) came: the server ended the stream

	line []byte // a partial event-stream line
}

const maxSSEHeader = 16 << 10

var errSSEFraming = errors.New("malformed HTTP/1.1 response framing")

// feed consumes p and calls onLine for each complete event-stream line
// (without its line ending). It returns an error for a malformed response
// or a status other than 200, after which the wire is unusable.
func (w *sseWire) feed(p []byte, onLine func([]byte)) error {
	if !w.inBody {
		w.header = append(w.header, p...)
		end := bytes.Index(w.header, []byte("\r\n\r\n"))
		if end < 0 {
			if len(w.header) > maxSSEHeader {
				return errSSEFraming
			}
			return nil
		}
		if err := w.parseHeader(w.header[:end]); err != nil {
			return err
		}
		p = w.header[end+4:]
		w.header = nil
		w.inBody = true
	}
	if !w.chunked {
		w.lines(p, onLine)
		return nil
	}
	for len(p) > 0 && !w.ended {
		switch {
		case w.crlfLeft > 0:
			// The data's CRLF; be lenient about a bare LF as the last byte.
			if p[0] != "\r\n"[2-w.crlfLeft] {
				return errSSEFraming
			}
			p = p[1:]
			w.crlfLeft--
		case w.chunkLeft > 0:
			n := min(w.chunkLeft, len(p))
			w.lines(p[:n], onLine)
			p = p[n:]
			w.chunkLeft -= n
			if w.chunkLeft == 0 {
				w.crlfLeft = 2
			}
		default:
			k := bytes.IndexByte(p, '\n')
			if k < 0 {
				w.sizeLine = append(w.sizeLine, p...)
				if len(w.sizeLine) > 1024 {
					return errSSEFraming
				}
				return nil
			}
			w.sizeLine = append(w.sizeLine, p[:k]...)
			p = p[k+1:]
			size, err := chunkSize(w.sizeLine)
			w.sizeLine = w.sizeLine[:0]
			if err != nil {
				return err
			}
			if size == 0 {
				w.ended = true
			}
			w.chunkLeft = size
		}
	}
	return nil
}

func (w *sseWire) parseHeader(h []byte) error {
	status, rest, _ := bytes.Cut(h, []byte("\r\n"))
	f := bytes.Fields(status)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return errSSEFraming
	}
	code, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return errSSEFraming
	}
	w.status = code
	if code != 200 {
		return fmt.Errorf("SSE status %d", code)
	}
	for _, line := range bytes.Split(rest, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Transfer-Encoding")) {
			w.chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		}
	}
	return nil
}

// chunkSize parses a chunk-size line (hex, optional extensions, CR).
func chunkSize(line []byte) (int, error) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if k := bytes.IndexByte(line, ';'); k >= 0 {
		line = line[:k]
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 31)
	if err != nil {
		return 0, errSSEFraming
	}
	return int(v), nil
}

// lines splits body bytes into event-stream lines (LF, CRLF or CR endings
// are all LF-terminated here; a CR before the LF is dropped).
func (w *sseWire) lines(p []byte, onLine func([]byte)) {
	for len(p) > 0 {
		k := bytes.IndexByte(p, '\n')
		if k < 0 {
			w.line = append(w.line, p...)
			return
		}
		seg := p[:k]
		p = p[k+1:]
		if len(w.line) > 0 {
			w.line = append(w.line, seg...)
			seg = w.line
		}
		onLine(bytes.TrimSuffix(seg, []byte("\r")))
		w.line = w.line[:0]
	}
}

// rawSSE runs the subscribers of one fan-out over raw sockets.
type rawSSE struct {
	f    *fanout
	ip   net.IP
	port int
	host string        // Host header
	path string        // path and query up to "offset="
	poll time.Duration // 0: block in epoll_wait
}

type rawSub struct {
	s      int
	fd     int
	offset string
	wire   sseWire
	joined bool
}

func newRawSSE(f *fanout) (*rawSSE, error) {
	u, err := url.Parse(f.url)
	if err != nil {
		return nil, err
	}
	ta, err := net.ResolveTCPAddr("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", u.Host, err)
	}
	return &rawSSE{f: f, ip: ta.IP, port: ta.Port, host: u.Host, path: u.EscapedPath()}, nil
}

// sockaddr builds the server's address for one connect: syscall encodes
// into the Sockaddr itself, so dialers must not share one.
func (r *rawSSE) sockaddr() (syscall.Sockaddr, int) {
	if ip4 := r.ip.To4(); ip4 != nil {
		sa := &syscall.SockaddrInet4{Port: r.port}
		copy(sa.Addr[:], ip4)
		return sa, syscall.AF_INET
	}
	sa := &syscall.SockaddrInet6{Port: r.port}
	copy(sa.Addr[:], r.ip.To16())
	return sa, syscall.AF_INET6
}

// connect opens a socket to the server and writes the SSE request; the
// socket comes back non-blocking.
func (r *rawSSE) connect(offset string) (int, error) {
	addr, family := r.sockaddr()
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	for {
		err = syscall.Connect(fd, addr)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	req := "GET " + r.path + "?offset=" + url.QueryEscape(offset) + "&live=sse HTTP/1.1\r\n" +
		"Host: " + r.host + "\r\nAccept: text/event-stream\r\nUser-Agent: dsbench\r\n\r\n"
	for b := []byte(req); len(b) > 0; {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			syscall.Close(fd)
			return -1, fmt.Errorf("write request: %w", err)
		}
		b = b[n:]
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("set non-blocking: %w", err)
	}
	return fd, nil
}

// run connects every subscriber (dialConc at a time), then reads them on
// `loops` epoll loops until ctx ends. It returns when every loop is done.
func (r *rawSSE) run(ctx context.Context, subs, loops, dialConc int, offset string) {
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
			if ctx.Err() != nil {
				r.f.failed.Add(1)
				return
			}
			fd, err := r.connect(offset)
			if err != nil {
				r.f.noteErr(err.Error())
				r.f.failed.Add(1)
				return
			}
			sub := &rawSub{s: s, fd: fd, offset: offset}
			loop := s % loops
			mu.Lock()
			table[loop][fd] = sub
			mu.Unlock()
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
			if err := syscall.EpollCtl(eps[loop], syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
				r.f.noteErr("epoll_ctl: " + err.Error())
				r.f.failed.Add(1)
			}
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

// loop reads ready sockets until ctx ends. A socket the server closes (or
// whose stream the server ends) reconnects from the last streamNextOffset
// its control events gave.
func (r *rawSSE) loop(ctx context.Context, ep int, subs map[int]*rawSub, mu *sync.Mutex) {
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
			fd := int(ev.Fd)
			mu.Lock()
			sub := subs[fd]
			mu.Unlock()
			if sub == nil {
				continue
			}
			r.service(ctx, ep, sub, buf, subs, mu)
		}
		if r.poll > 0 && n < len(events) {
			time.Sleep(r.poll)
		}
	}
}

// service reads what one socket has: one read per readiness report, since
// the epoll is level-triggered and a partial read is reported again.
func (r *rawSSE) service(ctx context.Context, ep int, sub *rawSub, buf []byte, subs map[int]*rawSub, mu *sync.Mutex) {
	n, err := syscall.Read(sub.fd, buf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	var problem error
	broken := false // the response itself is malformed or refused
	switch {
	case err != nil:
		problem = err
	case n == 0:
		problem = errors.New("server closed the connection")
	default:
		problem = sub.wire.feed(buf[:n], func(line []byte) {
			r.f.stamp(sub.s, line)
			sub.offset = resumeOffset(line, sub.offset)
		})
		broken = problem != nil
		if !broken && !sub.joined && sub.wire.inBody {
			sub.joined = true
			r.f.ready.Add(1)
		}
		if !broken && !sub.wire.ended {
			return
		}
	}
	// The connection is done: drop it, and reconnect unless it never got in
	// or its response was broken (a reconnect would repeat that).
	// Out of the table before the close: a dialer may get the same number.
	mu.Lock()
	delete(subs, sub.fd)
	mu.Unlock()
	syscall.Close(sub.fd)
	if !sub.joined || broken {
		if problem == nil {
			problem = errors.New("the server ended the stream before its headers")
		}
		r.f.noteErr(problem.Error())
		if !sub.joined {
			r.f.failed.Add(1)
		}
		return
	}
	for attempt := 0; attempt < 100 && ctx.Err() == nil; attempt++ {
		r.f.reconnects.Add(1)
		fd, err := r.connect(sub.offset)
		if err != nil {
			r.f.noteErr(err.Error())
			time.Sleep(100 * time.Millisecond)
			continue
		}
		next := &rawSub{s: sub.s, fd: fd, offset: sub.offset, joined: true}
		mu.Lock()
		subs[fd] = next
		mu.Unlock()
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			r.f.noteErr("epoll_ctl: " + err.Error())
		}
		return
	}
}
