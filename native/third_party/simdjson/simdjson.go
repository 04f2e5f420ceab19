// Package simdjson compiles the vendored simdjson 3.0.1 single-file release
// (simdjson.cpp and simdjson.h, unchanged; LICENSE beside them) into the
// binary, so that no libsimdjson shared library is needed at run time. It
// has no Go API: package native includes simdjson.h from this directory and
// imports this package for its object code. Being its own package, it is
// compiled once (the file is large: several seconds) and then served from
// Go's build cache however often the engine changes.
package simdjson

// #cgo CXXFLAGS: -std=c++17 -O2 -w
import "C"
