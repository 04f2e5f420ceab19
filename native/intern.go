package native

// Interned returns the package's own copy of s when s is one of the strings
// the engine puts in most response headers: a header name (response.h's
// header:: names, in Go's canonical form) or a fixed value (security, CORS,
// Cache-Control, "true", common content types). A caller that keeps header
// strings past Response.Release can keep an interned one as it is and copy
// only the rest (see Response.HeaderView).
//
// The list is only an optimisation: a string missing from it is copied, not
// lost. TestInternedCoversResponseHeaderNames keeps the names complete.
func Interned(s string) (string, bool) {
	// A switch on constant strings compiles to a search on length and
	// content, with no hashing and no allocation.
	switch s {
	// Names (response.h, namespace header).
	case "Content-Type":
		return "Content-Type", true
	case "Cache-Control":
		return "Cache-Control", true
	case "Etag":
		return "Etag", true
	case "Location":
		return "Location", true
	case "Allow":
		return "Allow", true
	case "Retry-After":
		return "Retry-After", true
	case "Stream-Next-Offset":
		return "Stream-Next-Offset", true
	case "Stream-Up-To-Date":
		return "Stream-Up-To-Date", true
	case "Stream-Closed":
		return "Stream-Closed", true
	case "Stream-Cursor":
		return "Stream-Cursor", true
	case "Stream-Ttl":
		return "Stream-Ttl", true
	case "Stream-Expires-At":
		return "Stream-Expires-At", true
	case "Stream-Sse-Data-Encoding":
		return "Stream-Sse-Data-Encoding", true
	case "Producer-Epoch":
		return "Producer-Epoch", true
	case "Producer-Seq":
		return "Producer-Seq", true
	case "Producer-Expected-Seq":
		return "Producer-Expected-Seq", true
	case "Producer-Received-Seq":
		return "Producer-Received-Seq", true
	case "X-Content-Type-Options":
		return "X-Content-Type-Options", true
	case "Cross-Origin-Resource-Policy":
		return "Cross-Origin-Resource-Policy", true
	case "Access-Control-Allow-Origin":
		return "Access-Control-Allow-Origin", true
	case "Access-Control-Allow-Methods":
		return "Access-Control-Allow-Methods", true
	case "Access-Control-Allow-Headers":
		return "Access-Control-Allow-Headers", true
	case "Access-Control-Expose-Headers":
		return "Access-Control-Expose-Headers", true
	case "Access-Control-Max-Age":
		return "Access-Control-Max-Age", true
	case "Content-Disposition":
		return "Content-Disposition", true

	// Values the engine sends as constants.
	case "true":
		return "true", true
	case "nosniff":
		return "nosniff", true
	case "cross-origin":
		return "cross-origin", true
	case "*":
		return "*", true
	case "no-store":
		return "no-store", true
	case "no-cache, no-transform":
		return "no-cache, no-transform", true
	case "public, max-age=60, stale-while-revalidate=300":
		return "public, max-age=60, stale-while-revalidate=300", true
	case "base64":
		return "base64", true
	case "86400":
		return "86400", true
	case "GET, HEAD, POST, PUT, DELETE, OPTIONS":
		return "GET, HEAD, POST, PUT, DELETE, OPTIONS", true
	case exposeHeaders:
		return exposeHeaders, true

	// Common content types (a stream's own type is echoed as created).
	case "text/plain":
		return "text/plain", true
	case "text/plain; charset=utf-8":
		return "text/plain; charset=utf-8", true
	case "application/json":
		return "application/json", true
	case "application/octet-stream":
		return "application/octet-stream", true
	case "text/event-stream":
		return "text/event-stream", true
	}
	return "", false
}

// exposeHeaders is Access-Control-Expose-Headers on every response
// (Engine::AddCommonHeaders), the longest header value by far.
const exposeHeaders = "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, " +
	"Stream-TTL, Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, " +
	"Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, ETag, " +
	"Location, Content-Type"
