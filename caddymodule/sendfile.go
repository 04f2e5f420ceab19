package caddymodule

import (
	"errors"
	"io"
	"net/http"
	"os"
	"syscall"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// sendFiles writes a body's file ranges in order and closes every file.
//
// On plain HTTP/1.1 net/http sends an *os.File with sendfile(2), straight
// from the page cache, when it gets one behind at most one io.LimitedReader.
// Caddy's IdleTimeoutWriter (always there: its write idle timeout defaults
// to a minute) cuts what it is given into chunks with an io.LimitReader of
// its own, so an io.LimitedReader of ours would be two deep and copied
// through Go. That writer gets a fileSection instead, which offers the
// file to sendfile for each whole chunk and reads the last partial one.
// Anything else (TLS, HTTP/2, a middleware in between) gets an
// io.LimitedReader and may copy. A failure (a client gone away) stops the
// body short, which its Content-Length tells the client.
func sendFiles(w http.ResponseWriter, files []native.FileRange) {
	ok := true
	for _, f := range files {
		if ok {
			ok = sendFile(w, f) == nil
		}
		_ = f.File.Close() // read-only: nothing to lose
	}
}

func sendFile(w http.ResponseWriter, f native.FileRange) error {
	if _, err := f.File.Seek(f.Offset, io.SeekStart); err != nil {
		return err
	}
	if itw, ok := w.(*caddyhttp.IdleTimeoutWriter); ok {
		chunk := int64(itw.MaxChunk)
		if chunk <= 0 {
			chunk = caddyhttp.DefaultMaxWriteChunk
		}
		s := &fileSection{f: f.File, end: f.Offset + f.Length, chunk: chunk}
		n, err := itw.ReadFrom(s)
		if err == nil && n != f.Length {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	_, err := io.CopyN(w, f.File, f.Length)
	return err
}

// fileSection reads a file from its current position up to end. For
// sendfile it is a syscall.Conn, but only while at least `chunk` bytes are
// left: the IdleTimeoutWriter limits each ReadFrom to `chunk` bytes, and
// sendfile, which bypasses Read, sends up to that limit.
type fileSection struct {
	f     *os.File
	end   int64 // file position where the section ends
	chunk int64
}

var errLastChunk = errors.New("last partial chunk: read, not sent from the file")

func (s *fileSection) left() (int64, error) {
	pos, err := s.f.Seek(0, io.SeekCurrent)
	return s.end - pos, err
}

func (s *fileSection) Read(p []byte) (int, error) {
	n, err := s.left()
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > n {
		p = p[:n]
	}
	return s.f.Read(p)
}

// SyscallConn is what net's sendfile path asks for (see sendFiles).
func (s *fileSection) SyscallConn() (syscall.RawConn, error) {
	if n, err := s.left(); err != nil || n < s.chunk {
		return nil, errLastChunk
	}
	return s.f.SyscallConn()
}

// writeParts writes views of engine memory (a memory stream's blocks) in
// order, straight from that memory: net/http copies each into the socket
// with write(2) once it has the headers out, and nothing is copied through
// a Go buffer.
func writeParts(w http.ResponseWriter, parts [][]byte) error {
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}
