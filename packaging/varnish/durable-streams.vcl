# Varnish (7.x, VCL 4.1) in front of durable-streams-server: read fan-out
# through a shared cache, as PROTOCOL.md §10 intends. Our own headers do the
# work; this file only keys, collapses and passes.
#
#   catch-up reads  GET ?offset=X           cached (Cache-Control: public, max-age=60,
#                                           stale-while-revalidate=300) and reused
#   long-polls      GET ?live=long-poll&offset=X&cursor=C
#                                           collapsed per URL (stream, offset, cursor):
#                                           one origin request, every waiter gets its
#                                           answer; the answer's Stream-Cursor moves the
#                                           next round to a new URL
#   SSE             GET ?live=sse           passed, streamed; the server ends it every
#                                           sse_reconnect_interval and clients reconnect
#   HEAD, writes (POST, PUT, DELETE), <root>/__ds/...   passed
#   credentials     Authorization, Cookie and the `token` query parameter are part
#                   of the cache key: a response is only ever reused for the same
#                   credentials, and only stored when our response says public.
#
# Set the backend below to your server (or group of servers). Timeouts: the
# first byte of a long-poll answer comes after up to long_poll_timeout (30s by
# default), so first_byte_timeout must exceed it; SSE sends a keep-alive
# comment every 15s, so between_bytes_timeout must exceed that.
vcl 4.1;

import std;

backend origin {
    .host = "127.0.0.1";
    .port = "4437";
    .connect_timeout = 3s;
    .first_byte_timeout = 75s;
    .between_bytes_timeout = 75s;
}

sub vcl_recv {
    # Writes and the subscription API are never cached. A successful PUT
    # (created) or DELETE also drops what this cache holds for that stream
    # (vcl_deliver), so a path re-created after DELETE is not answered with
    # the old stream's bytes.
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    if (req.url ~ "^[^?]*/__ds(/|\?|$)") {
        return (pass);
    }
    # HEAD is the stream's metadata (no-store). Varnish would fetch a miss
    # as GET, i.e. a read from the start of the stream: not the same answer.
    if (req.method == "HEAD") {
        return (pass);
    }
    # SSE: one long streamed answer per client; nothing to share. Passed
    # (not piped) so each reconnect is its own request with its own log line.
    if (req.url ~ "[?&]live=sse(&|$)" || req.http.Accept ~ "text/event-stream") {
        return (pass);
    }
    # Clients SHOULD sort query parameters (§10.1); make it so for all.
    set req.url = std.querysort(req.url);
    # Unlike Varnish's built-in vcl_recv, requests with Authorization or
    # Cookie are not passed: vcl_hash keys them by their credentials.
    return (hash);
}

sub vcl_hash {
    hash_data(req.url);
    if (req.http.host) {
        hash_data(req.http.host);
    } else {
        hash_data(server.ip);
    }
    if (req.http.Authorization) {
        hash_data("authorization: " + req.http.Authorization);
    }
    if (req.http.Cookie) {
        hash_data("cookie: " + req.http.Cookie);
    }
    return (lookup);
}

sub vcl_backend_response {
    # The stream's path, for the bans in vcl_deliver.
    set beresp.http.X-DS-Path = regsub(bereq.url, "\?.*$", "");
    if (bereq.url ~ "[?&]live=long-poll(&|$)" && beresp.status == 204) {
        # A long-poll that timed out (or a closed stream): no-store, which
        # Varnish would turn into a hit-for-miss object, releasing every
        # collapsed waiter to the origin one by one, each to wait another
        # long_poll_timeout there. Keep it 5 seconds instead, so they all
        # get this answer and its Stream-Cursor (a new URL for the next
        # round): woken waiters look the object up again, and waking
        # thousands takes seconds on a busy machine. A reader arriving later
        # with the same URL gets this 204 at once and moves on to the new
        # cursor (where new data is answered at once): never a loop, since
        # the cursor always moves. Clients still see Cache-Control: no-store.
        set beresp.ttl = 5s;
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        return (deliver);
    }
    # Everything else as Varnish's built-in rules say: public answers are
    # kept max-age (60s) plus stale-while-revalidate as grace; no-store,
    # private and Set-Cookie answers are not stored.
}

sub vcl_deliver {
    if ((req.method == "PUT" && resp.status == 201) ||
        (req.method == "DELETE" && resp.status >= 200 && resp.status < 300)) {
        # No quotes: VCL's ban() takes the argument as is (a path has no
        # spaces; quotes would become part of the compared value).
        ban("obj.http.X-DS-Path == " + regsub(req.url, "\?.*$", ""));
    }
    unset resp.http.X-DS-Path;
}
