package caddymodule

import (
	"net/http"
	"strings"
)

// scopeClaim is a token's "ds" claim: for each verb, the stream paths
// (relative to stream_root, no leading slash) it may be used on, as glob
// patterns with the protocol's rules (PROTOCOL.md §6): `*` is exactly one
// path segment, `**` zero or more; any other segment matches itself.
type scopeClaim struct {
	Read   []string `json:"read"`
	Append []string `json:"append"`
	Create []string `json:"create"`
	Close  []string `json:"close"`
	Fork   []string `json:"fork"` // create a fork here (needs read on the source)
	Delete []string `json:"delete"`
	// The reserved control paths (<stream_root>/__ds/...): subscriptions.
	Subscriptions bool `json:"subscriptions"`
}

// allows tells whether any pattern matches path.
func allows(patterns []string, path string) bool {
	for _, p := range patterns {
		if globMatch(p, path) {
			return true
		}
	}
	return false
}

// globMatch matches path against pattern segment by segment. It runs in
// O(segments(pattern) × segments(path)) whatever the `**`s.
func globMatch(pattern, path string) bool {
	ps := strings.Split(pattern, "/")
	ss := strings.Split(path, "/")
	// reach[j]: the pattern's first i segments can match the path's first j.
	reach := make([]bool, len(ss)+1)
	next := make([]bool, len(ss)+1)
	reach[0] = true
	for _, p := range ps {
		clear(next)
		switch p {
		case "**":
			any := false
			for j := range reach {
				any = any || reach[j]
				next[j] = any
			}
		default:
			for j := 1; j <= len(ss); j++ {
				if reach[j-1] && (p == "*" || p == ss[j-1]) {
					next[j] = true
				}
			}
		}
		reach, next = next, reach
	}
	return reach[len(ss)]
}

// cleanStreamPath says a relative stream path has no empty, "." or ".."
// segment, which patterns could otherwise be fooled by.
func cleanStreamPath(rel string) bool {
	if rel == "" {
		return true
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// authorize tells whether scope allows r on the stream at rel (relative to
// root); a refusal comes with a one-line reason.
func authorize(scope *scopeClaim, r *http.Request, root, rel string) (bool, string) {
	if !cleanStreamPath(rel) {
		return false, "stream path has an empty, . or .. segment"
	}
	if rel == "__ds" || strings.HasPrefix(rel, "__ds/") {
		if scope.Subscriptions {
			return true, ""
		}
		return false, "token does not allow subscriptions"
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if allows(scope.Read, rel) {
			return true, ""
		}
		return false, "token does not allow reading this stream"
	case http.MethodDelete:
		if allows(scope.Delete, rel) {
			return true, ""
		}
		return false, "token does not allow deleting this stream"
	case http.MethodPut:
		if from := r.Header.Get("Stream-Forked-From"); from != "" {
			if !allows(scope.Fork, rel) && !allows(scope.Create, rel) {
				return false, "token does not allow creating a fork here"
			}
			src := relativePath(root, from)
			if !underStreamRoot(root, from) || !cleanStreamPath(src) || !allows(scope.Read, src) {
				return false, "token does not allow reading the fork's source"
			}
			return true, ""
		}
		if allows(scope.Create, rel) {
			return true, ""
		}
		return false, "token does not allow creating this stream"
	case http.MethodPost:
		closing := strings.EqualFold(strings.TrimSpace(r.Header.Get("Stream-Closed")), "true")
		if closing && !allows(scope.Close, rel) {
			return false, "token does not allow closing this stream"
		}
		// A close without a body appends nothing; with one it is also an append.
		if (!closing || r.ContentLength != 0) && !allows(scope.Append, rel) {
			return false, "token does not allow appending to this stream"
		}
		return true, ""
	}
	return false, "token does not allow this method"
}
