// Package lmdb compiles the vendored LMDB 0.9.24 (OpenLDAP's liblmdb: mdb.c
// and midl.c, unchanged; LICENSE beside them) into the binary, so that no
// liblmdb shared library is needed at run time. It has no Go API: package
// native includes lmdb.h from this directory and imports this package for
// its object code. Being its own package, it is compiled once and then
// served from Go's build cache however often the engine changes.
package lmdb

// LMDB's own Makefile builds with -O2 and -pthread. Its warnings are
// upstream's to fix, not ours, so they are silenced (-w).

// #cgo CFLAGS: -O2 -pthread -w
// #cgo LDFLAGS: -pthread
import "C"
