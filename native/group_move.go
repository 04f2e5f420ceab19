package native

/*
#include <stdlib.h>
#include "durable_streams.h"
*/
import "C"

import (
	"unsafe"
)

// ExportGroup returns the committed state of every stream of placement
// group (bytes, producers, closure, TTL/expiry, forks) in the engine's
// export format (native/group_move.cc). The caller keeps writes to the
// group out while it runs.
func (e *Engine) ExportGroup(group string) ([]byte, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return nil, ErrClosed
	}
	cg := C.CString(group)
	defer C.free(unsafe.Pointer(cg))
	var out *C.char
	var n C.size_t
	var cerr C.ds_error
	if code := C.ds_engine_export_group(e.ptr, cg, C.size_t(len(group)), &out, &n, &cerr); code != C.DS_OK {
		return nil, newError("export group", code, &cerr)
	}
	defer C.ds_buffer_free(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}

// ImportStreams adds the streams of an export; none of their paths may
// exist in this engine. It returns how many streams it added.
func (e *Engine) ImportStreams(data []byte) (uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return 0, ErrClosed
	}
	var p *C.char
	if len(data) > 0 {
		p = (*C.char)(C.CBytes(data))
		defer C.free(unsafe.Pointer(p))
	}
	var count C.uint64_t
	var cerr C.ds_error
	if code := C.ds_engine_import(e.ptr, p, C.size_t(len(data)), &count, &cerr); code != C.DS_OK {
		return uint64(count), newError("import streams", code, &cerr)
	}
	return uint64(count), nil
}

// ForgetGroup deletes every stream of placement group and returns how many.
func (e *Engine) ForgetGroup(group string) (uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return 0, ErrClosed
	}
	cg := C.CString(group)
	defer C.free(unsafe.Pointer(cg))
	var count C.uint64_t
	var cerr C.ds_error
	if code := C.ds_engine_forget_group(e.ptr, cg, C.size_t(len(group)), &count, &cerr); code != C.DS_OK {
		return uint64(count), newError("forget group", code, &cerr)
	}
	return uint64(count), nil
}
