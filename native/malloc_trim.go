package native

/*
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#define DS_HAVE_MALLOC_TRIM 1
// Gives the free pages of every glibc arena back to the system.
static void ds_trim_malloc(void) { malloc_trim(0); }
#else
#define DS_HAVE_MALLOC_TRIM 0
static void ds_trim_malloc(void) {}
#endif
*/
import "C"

// TrimMalloc returns the engine's freed heap memory to the operating system
// (glibc's malloc_trim(0); elsewhere it does nothing).
//
// glibc keeps freed chunks in its arenas, one for each thread that
// allocated, and on its own gives memory back only from the top of an
// arena. The engine calls come from whichever threads Go runs them on, so a
// burst of thousands of SSE subscribers leaves the requests' sessions and
// responses freed but resident in several arenas: 1.7 MB with 5,000
// subscribers, a third of a KiB each (smaps of one run), until a later
// allocation on that thread reuses it. The HTTP layer calls this when such
// a burst settles, as it returns Go's garbage; it costs a walk over the
// arenas' free chunks.
func TrimMalloc() { C.ds_trim_malloc() }

// trimsMalloc tells whether TrimMalloc does anything here (glibc).
var trimsMalloc = C.DS_HAVE_MALLOC_TRIM == 1
