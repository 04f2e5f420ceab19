package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// ---- Request bodies -----------------------------------------------------
//
// An append or create body is read whole before the one engine call (the
// engine validates JSON and checks the protocol's preconditions on all of
// it), so what matters is that holding it costs its size and no more,
// whatever its framing, and that many of them cannot together exhaust
// memory:
//
//   - Up to smallBody bytes it goes into a pooled Go buffer: the hot path of
//     small appends allocates nothing.
//   - A larger body with a Content-Length goes into an anonymous mapping of
//     exactly that size; one without (chunked, HTTP/2 without a length) is
//     read into a pooled buffer first and, if it outgrows it, into a mapping
//     of max_append_size+1 bytes that is only reserved, not committed: the
//     kernel backs the pages the body touches and no more, so the body never
//     has to be copied to grow (bytes.Buffer doubling cost up to 4x its
//     size). Unmapping gives the memory back to the system at once, where a
//     Go slice would stay resident until the garbage collector and the
//     scavenger got to it.
//   - A body that passes max_append_size is refused (413) as soon as it
//     does: reading stops there and the rest is never buffered.
//   - Every body reserves its bytes from the handler's in-flight budget
//     before they are read; a body with no room is not read (503 with
//     Retry-After). A body without a length that outgrows the pooled buffer
//     reserves max_append_size at once (and gives back the difference when
//     it is complete), so large bodies are admitted or shed at their start
//     rather than all starved halfway.
//
// The engine copies what it keeps (one copy, into its store) during the
// call; the body is released right after it.

// smallBody is the size of the pooled buffers that hold small bodies, and
// the most a body without a length costs beyond its own size.
const smallBody = 64 << 10

var smallBodies = sync.Pool{New: func() any {
	b := make([]byte, smallBody)
	return &b
}}

// mappedStep is how many bytes of a large body one read asks for.
const mappedStep = 1 << 20

// bodyBudget bounds the bytes of request bodies in flight at once.
type bodyBudget struct {
	limit int64
	used  atomic.Int64
}

func newBodyBudget(limit int64) *bodyBudget { return &bodyBudget{limit: limit} }

// reserve takes n bytes, or nothing and false when they do not fit. A nil
// budget has room for anything.
func (b *bodyBudget) reserve(n int64) bool {
	if b == nil {
		return true
	}
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *bodyBudget) release(n int64) {
	if b != nil && n != 0 {
		b.used.Add(-n)
	}
}

// inUse is the bytes reserved right now.
func (b *bodyBudget) inUse() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// requestBody is a request body read whole, or the reason it was not.
type requestBody struct {
	data       []byte
	small      *[]byte // the pooled buffer data is in, if any
	mapped     []byte  // the mapping data is in, if any
	budget     *bodyBudget
	reserved   int64
	tooLarge   bool // over max_append_size: 413
	overBudget bool // no room in the in-flight budget: 503
}

func (b *requestBody) bytes() []byte { return b.data }

// release gives back the buffer or mapping and the budget; safe to call
// twice. The bytes must not be used afterwards.
func (b *requestBody) release() {
	b.data = nil
	if b.small != nil {
		smallBodies.Put(b.small)
		b.small = nil
	}
	if b.mapped != nil {
		unmapAnonymous(b.mapped) // fails only for a bad range: a bug, not a state
		b.mapped = nil
	}
	b.budget.release(b.reserved)
	b.reserved = 0
}

// reserve takes n more bytes from the budget for this body.
func (b *requestBody) reserve(n int64) bool {
	if !b.budget.reserve(n) {
		return false
	}
	b.reserved += n
	return true
}

// refuse drops what was read and records why the body is not kept.
func (b *requestBody) refuse(tooLarge bool) (requestBody, error) {
	b.release()
	if tooLarge {
		b.tooLarge = true
	} else {
		b.overBudget = true
	}
	return *b, nil
}

// readBody reads the body of an append or create (see the comment above).
// A body known or found to exceed limit is reported too large after at most
// limit+1 bytes were read, as is one cut short by Caddy's request_body
// max_size; one the budget has no room for is reported over budget.
func readBody(r *http.Request, limit int64, budget *bodyBudget) (requestBody, error) {
	b := requestBody{budget: budget}
	// A server request's ContentLength 0 means no body (an unknown length is
	// -1). Not reading it also spares the idle-timeout reader Caddy wraps
	// around every body its deadline bookkeeping, on every GET. Only appends
	// and creates carry bodies; any other method's is left unread.
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 ||
		(r.Method != http.MethodPost && r.Method != http.MethodPut) {
		return b, nil
	}
	if r.ContentLength > limit {
		b.tooLarge = true
		return b, nil
	}
	var err error
	if r.ContentLength > 0 {
		err = b.readKnown(r.Body, r.ContentLength)
	} else {
		err = b.readUnknown(r.Body, limit)
	}
	switch {
	case errors.Is(err, errTooLarge):
		return b.refuse(true)
	case errors.Is(err, errOverBudget):
		return b.refuse(false)
	case err != nil:
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return b.refuse(true)
		}
		b.release()
		return requestBody{}, err
	}
	return b, nil
}

var (
	errTooLarge   = errors.New("request body too large")
	errOverBudget = errors.New("no room for the request body in the in-flight budget")
)

// readKnown reads a body of exactly n bytes (its Content-Length).
func (b *requestBody) readKnown(body io.Reader, n int64) error {
	if !b.reserve(n) {
		return errOverBudget
	}
	if n <= smallBody {
		b.small = smallBodies.Get().(*[]byte)
		b.data = (*b.small)[:n]
	} else {
		m, err := mapBody(n)
		if err != nil {
			return err
		}
		b.mapped, b.data = m, m[:n]
	}
	if _, err := io.ReadFull(body, b.data); err != nil {
		return fmt.Errorf("reading request body: %w", err)
	}
	return nil
}

// readUnknown reads a body of unknown length, stopping as soon as it passes
// limit.
func (b *requestBody) readUnknown(body io.Reader, limit int64) error {
	if !b.reserve(min(smallBody, limit)) {
		return errOverBudget
	}
	b.small = smallBodies.Get().(*[]byte)
	buf := *b.small
	if int64(len(buf)) > limit+1 {
		buf = buf[:limit+1]
	}
	n, err := io.ReadFull(body, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		b.data = buf[:n]
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading request body: %w", err)
	}
	if int64(n) > limit {
		return errTooLarge
	}

	// Outgrown: its size is unknown, so it is admitted for the largest size
	// it may have, limit (the byte past it that proves a body too large
	// needs no room), or shed now. Taking room bit by bit instead lets many
	// large bodies fill the budget together and then all fail half-read.
	if !b.reserve(limit - b.reserved) {
		return errOverBudget
	}
	m, err := mapBody(limit + 1)
	if err != nil {
		return err
	}
	b.mapped = m
	copy(m, buf)
	smallBodies.Put(b.small)
	b.small = nil
	got := int64(n)
	for {
		step := min(int64(mappedStep), int64(len(m))-got)
		n, err := io.ReadFull(body, m[got:got+step])
		got += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			b.data = m[:got]
			// Complete: hold only its size from now on.
			b.budget.release(b.reserved - got)
			b.reserved = got
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading request body: %w", err)
		}
		if got > limit {
			return errTooLarge
		}
	}
}

// mapBody reserves n bytes of private anonymous memory (mapAnonymous, per
// platform). Pages are backed only once written. A failure is answered as a
// full budget: the server has no memory for the body now.
func mapBody(n int64) ([]byte, error) {
	m, err := mapAnonymous(int(n))
	if err != nil {
		return nil, fmt.Errorf("mapping %d bytes for a request body: %w (%w)", n, err, errOverBudget)
	}
	return m, nil
}
