package main

import (
	"bytes"
	"errors"
	"strconv"
)

// respWire decodes one HTTP/1.1 response as its bytes arrive: the status
// line and headers, then the body (Content-Length, chunked, or until the
// connection closes). It is transport-free so that it can be fed any split
// of the bytes, and keeps only what the fan-out subscribers need.
type respWire struct {
	header     []byte // header bytes until the blank line
	inBody     bool
	status     int
	chunked    bool
	length     int64 // Content-Length; -1: none (the body ends at close)
	closeAfter bool  // Connection: close
	nextOffset string
	cursor     string

	// Chunked framing: size line, chunk data, the CRLF after the data, then
	// after the last chunk the trailer section up to an empty line.
	sizeLine  []byte
	chunkLeft int
	crlfLeft  int
	trailer   bool

	done bool // the whole response is in
}

const maxRespHeader = 16 << 10

var errFraming = errors.New("malformed HTTP/1.1 response framing")

// feed consumes bytes of the response from p, passing body bytes to onBody,
// and returns how many it used: once the response is done the rest of p
// belongs to whatever follows on the connection. An error means the
// response is malformed and the wire unusable.
func (w *respWire) feed(p []byte, onBody func([]byte)) (int, error) {
	used := 0
	if !w.inBody {
		before := len(w.header)
		w.header = append(w.header, p...)
		end := bytes.Index(w.header, []byte("\r\n\r\n"))
		if end < 0 {
			if len(w.header) > maxRespHeader {
				return len(p), errFraming
			}
			return len(p), nil
		}
		if err := w.parseHeader(w.header[:end]); err != nil {
			return len(p), err
		}
		used = end + 4 - before
		p = p[used:]
		w.header = nil
		w.inBody = true
		if w.length == 0 && !w.chunked {
			w.done = true
			return used, nil
		}
	}
	n, err := w.body(p, onBody)
	return used + n, err
}

func (w *respWire) body(p []byte, onBody func([]byte)) (int, error) {
	if !w.chunked {
		if w.length < 0 {
			onBody(p)
			return len(p), nil
		}
		n := int(min(w.length, int64(len(p))))
		onBody(p[:n])
		w.length -= int64(n)
		w.done = w.length == 0
		return n, nil
	}
	total := len(p)
	for len(p) > 0 && !w.done {
		switch {
		case w.crlfLeft > 0:
			if p[0] != "\r\n"[2-w.crlfLeft] {
				return total - len(p), errFraming
			}
			p = p[1:]
			w.crlfLeft--
		case w.chunkLeft > 0:
			n := min(w.chunkLeft, len(p))
			onBody(p[:n])
			p = p[n:]
			w.chunkLeft -= n
			if w.chunkLeft == 0 {
				w.crlfLeft = 2
			}
		default: // a size line, or a trailer line after the last chunk
			k := bytes.IndexByte(p, '\n')
			if k < 0 {
				w.sizeLine = append(w.sizeLine, p...)
				if len(w.sizeLine) > 1024 {
					return total, errFraming
				}
				return total, nil
			}
			line := append(w.sizeLine, p[:k]...)
			p = p[k+1:]
			w.sizeLine = w.sizeLine[:0]
			if w.trailer {
				w.done = len(bytes.TrimSuffix(line, []byte("\r"))) == 0
				continue
			}
			size, err := chunkSize(line)
			if err != nil {
				return total - len(p), err
			}
			w.chunkLeft = size
			w.trailer = size == 0
		}
	}
	return total - len(p), nil
}

func (w *respWire) parseHeader(h []byte) error {
	status, rest, _ := bytes.Cut(h, []byte("\r\n"))
	f := bytes.Fields(status)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return errFraming
	}
	code, err := strconv.Atoi(string(f[1]))
	if err != nil || code < 100 || code > 999 {
		return errFraming
	}
	w.status = code
	w.length = -1
	for _, line := range bytes.Split(rest, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return errFraming
		}
		name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			w.chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return errFraming
			}
			w.length = n
		case bytes.EqualFold(name, []byte("Connection")):
			w.closeAfter = bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Stream-Next-Offset")):
			w.nextOffset = string(value)
		case bytes.EqualFold(name, []byte("Stream-Cursor")):
			w.cursor = string(value)
		}
	}
	// RFC 9112 §6.3: these never have a body.
	if code < 200 || code == 204 || code == 304 {
		w.length, w.chunked = 0, false
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
		return 0, errFraming
	}
	return int(v), nil
}

// lineSplitter cuts body bytes into lines (LF or CRLF endings; the CR is
// dropped), carrying a partial line over to the next call.
type lineSplitter struct{ line []byte }

func (l *lineSplitter) write(p []byte, onLine func([]byte)) {
	for len(p) > 0 {
		k := bytes.IndexByte(p, '\n')
		if k < 0 {
			l.line = append(l.line, p...)
			return
		}
		seg := p[:k]
		p = p[k+1:]
		if len(l.line) > 0 {
			l.line = append(l.line, seg...)
			seg = l.line
		}
		onLine(bytes.TrimSuffix(seg, []byte("\r")))
		l.line = l.line[:0]
	}
}
