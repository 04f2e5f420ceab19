// The subscription control API (PROTOCOL.md §6, §7.1–§7.2) under
// "<stream root>/__ds/": request parsing, validation and JSON answers. The
// state machine itself is in subscriptions.cc.
// <cmath> before simdjson.h: with zig's libc++ for macOS, <random> (via
// subscriptions.h) included after simdjson.h finds INFINITY undeclared.
#include <cmath>
#include <simdjson.h>

#include <algorithm>

#include "glob.h"
#include "hmac_sha256.h"
#include "json_text.h"
#include "offset.h"
#include "subscriptions.h"

namespace ds {
namespace {

Response JsonResponse(int status, std::string body) {
  Response r;
  r.status = status;
  r.Set("Content-Type", "application/json");
  r.Set("Cache-Control", "no-store");
  r.body = std::move(body);
  return r;
}

Response NoContent() {
  Response r;
  r.status = 204;
  r.Set("Cache-Control", "no-store");
  return r;
}

// {"error":{"code":..., "message":..., "field":...}}
Response JsonError(int status, std::string_view code, std::string_view message,
                   std::string_view field = {}) {
  std::string b = "{\"error\":{\"code\":";
  AppendJsonString(&b, code);
  b += ",\"message\":";
  AppendJsonString(&b, message);
  if (!field.empty()) {
    b += ",\"field\":";
    AppendJsonString(&b, field);
  }
  b += "}}";
  return JsonResponse(status, std::move(b));
}

Response Invalid(std::string_view field, std::string_view message) {
  return JsonError(400, "INVALID_REQUEST", message, field);
}

Response Fenced() { return JsonResponse(409, "{\"error\":{\"code\":\"FENCED\"}}"); }

Response MethodNotAllowed(std::string_view allow) {
  Response r = JsonError(405, "METHOD_NOT_ALLOWED", "method not allowed");
  r.Set("Allow", std::string(allow));
  return r;
}

Response NotFound() { return JsonError(404, "SUBSCRIPTION_NOT_FOUND", "no such subscription"); }

// Subscription ids go into URLs we build (callback_url): URL-safe only.
bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~' || c == ':';
  });
}

// A stream-root-relative stream path: non-empty segments, no "." or "..",
// not under the reserved __ds prefix.
bool ValidStreamPath(std::string_view path) {
  if (path.empty() || path.size() > 4096) return false;
  if (path == "__ds" || path.substr(0, 5) == "__ds/") return false;
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string_view seg = path.substr(start, slash == std::string_view::npos ? path.npos : slash - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    if (seg.find('\0') != std::string_view::npos) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool ParseBody(const Request& request, simdjson::dom::parser* parser,
               simdjson::padded_string* padded, simdjson::dom::element* root) {
  *padded = simdjson::padded_string(request.body);
  return !parser->parse(*padded).get(*root) && root->is_object();
}

std::string HexDigest(const Sha256Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : d) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace

Response Subscriptions::Handle(const Request& request, std::string_view rel) {
  // subscriptions/:id[/streams[/:path] | /callback | /claim | /ack | /release]
  constexpr std::string_view kPrefix = "subscriptions/";
  if (rel.substr(0, kPrefix.size()) != kPrefix) {
    return JsonError(404, "NOT_FOUND", "no such control resource");
  }
  rel.remove_prefix(kPrefix.size());
  const size_t slash = rel.find('/');
  const std::string id(rel.substr(0, slash));
  if (!ValidId(id)) return Invalid("id", "subscription id must be 1-200 URL-safe characters");
  std::string_view rest = slash == std::string_view::npos ? std::string_view() : rel.substr(slash + 1);
  const std::string_view method = request.method;
  if (slash == std::string_view::npos) {
    if (method == "PUT") return Put(request, id);
    if (method == "GET" || method == "HEAD") return Get(request, id);
    if (method == "DELETE") return Delete(id);
    return MethodNotAllowed("GET, PUT, DELETE");
  }
  if (rest == "streams") {
    if (method == "POST") return AddStreams(request, id);
    return MethodNotAllowed("POST");
  }
  if (rest.substr(0, 8) == "streams/") {
    // The path arrives percent-decoded, so "a%2Fb" and "a/b" are the same.
    if (method == "DELETE") return RemoveStream(id, std::string(rest.substr(8)));
    return MethodNotAllowed("DELETE");
  }
  if (rest == "claim" || rest == "callback" || rest == "ack" || rest == "release") {
    if (method != "POST") return MethodNotAllowed("POST");
    if (rest == "claim") return Claim(request, id);
    if (rest == "callback") return Complete(request, id, Completion::kCallback);
    if (rest == "ack") return Complete(request, id, Completion::kAck);
    return Complete(request, id, Completion::kRelease);
  }
  return JsonError(404, "NOT_FOUND", "no such control resource");
}

std::string Subscriptions::SubscriptionJson(const Sub& sub, const Request& request) const {
  std::string b = "{\"id\":";
  AppendJsonString(&b, sub.id);
  b += ",\"subscription_id\":";
  AppendJsonString(&b, sub.id);
  b += sub.type == Type::kWebhook ? ",\"type\":\"webhook\"" : ",\"type\":\"pull-wake\"";
  b += ",\"pattern\":";
  b += sub.pattern ? JsonString(*sub.pattern) : "null";
  b += ",\"streams\":" + StreamsJson(sub, {}, false);
  if (sub.type == Type::kWebhook) {
    b += ",\"webhook\":{\"url\":";
    AppendJsonString(&b, sub.webhook_url);
    auto kid = request.header(DS_FIELD_WEBHOOK_KID);
    auto base = request.header(DS_FIELD_REQUEST_BASE);
    if (kid && !kid->empty()) {
      // §6.3: public key discovery only; no shared secret is ever shown.
      b += ",\"signing\":{\"alg\":\"ed25519\",\"kid\":";
      AppendJsonString(&b, *kid);
      b += ",\"jwks_url\":";
      AppendJsonString(&b, std::string(base.value_or("")) + options_.stream_root + "/__ds/jwks.json");
      b += "}";
    }
    b += "}";
  } else {
    b += ",\"webhook\":null";
  }
  b += ",\"wake_stream\":";
  b += sub.type == Type::kPullWake ? JsonString(sub.wake_stream) : "null";
  b += ",\"lease_ttl_ms\":" + std::to_string(sub.lease_ttl_ms);
  b += ",\"created_at\":" + JsonString(IsoTimeMs(sub.created_at_ms));
  b += sub.attempts > 0 ? ",\"status\":\"failed\"" : ",\"status\":\"active\"";
  if (sub.attempts > 0) b += ",\"next_attempt_at\":" + JsonString(IsoTimeMs(sub.next_attempt_ms));
  b += ",\"generation\":" + std::to_string(sub.generation);
  b += ",\"description\":";
  b += sub.description ? JsonString(*sub.description) : "null";
  b += "}";
  return b;
}

Response Subscriptions::Put(const Request& request, const std::string& id) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded;
  simdjson::dom::element root;
  if (!ParseBody(request, &parser, &padded, &root)) {
    return Invalid("body", "body must be a JSON object");
  }
  auto sub = std::make_shared<Sub>();
  sub->id = id;
  std::string_view s;
  if (root["type"].get(s)) return Invalid("type", "type must be \"webhook\" or \"pull-wake\"");
  if (s == "webhook") {
    sub->type = Type::kWebhook;
  } else if (s == "pull-wake") {
    sub->type = Type::kPullWake;
  } else {
    return Invalid("type", "type must be \"webhook\" or \"pull-wake\"");
  }
  simdjson::dom::element e;
  if (!root["pattern"].get(e) && !e.is_null()) {
    if (e.get(s) || !ValidGlob(s)) {
      return Invalid("pattern", "pattern must be a glob of path segments (* one segment, ** any)");
    }
    if (s == "__ds" || s.substr(0, 5) == "__ds/") return Invalid("pattern", "pattern may not match __ds");
    sub->pattern = std::string(s);
  }
  if (!root["streams"].get(e) && !e.is_null()) {
    simdjson::dom::array arr;
    if (e.get(arr)) return Invalid("streams", "streams must be an array of stream paths");
    for (auto item : arr) {
      if (item.get(s) || !ValidStreamPath(s)) {
        return Invalid("streams", "streams must be an array of stream paths");
      }
      sub->streams.emplace_back(s);
    }
    std::sort(sub->streams.begin(), sub->streams.end());
    sub->streams.erase(std::unique(sub->streams.begin(), sub->streams.end()), sub->streams.end());
  }
  if (!sub->pattern && sub->streams.empty()) {
    return Invalid("pattern", "pattern or streams is required");
  }
  simdjson::dom::element webhook;
  const bool has_webhook = !root["webhook"].get(webhook) && !webhook.is_null();
  if (sub->type == Type::kWebhook) {
    if (!has_webhook || !webhook.is_object()) return Invalid("webhook.url", "webhook.url is required");
    if (webhook["url"].get(s) || s.empty()) return Invalid("webhook.url", "webhook.url must be a URL");
    // The caller checked the URL against SSRF rules (it knows the deployment's
    // development switch); here only its shape.
    if (s.substr(0, 8) != "https://" && s.substr(0, 7) != "http://") {
      return JsonError(400, "WEBHOOK_URL_REJECTED", "webhook.url must be an http(s) URL", "webhook.url");
    }
    sub->webhook_url = std::string(s);
  } else if (has_webhook) {
    return Invalid("webhook", "webhook is only for type \"webhook\"");
  }
  if (!root["wake_stream"].get(e) && !e.is_null()) {
    if (sub->type != Type::kPullWake) return Invalid("wake_stream", "wake_stream is only for type \"pull-wake\"");
    if (e.get(s) || !ValidStreamPath(s)) return Invalid("wake_stream", "wake_stream must be a stream path");
    sub->wake_stream = std::string(s);
  }
  if (sub->type == Type::kPullWake) {
    if (sub->wake_stream.empty()) return Invalid("wake_stream", "wake_stream is required for pull-wake");
    if (!host_->StreamTail(sub->wake_stream)) {
      return JsonError(400, "WAKE_STREAM_NOT_FOUND",
                       "wake_stream must be an existing stream (create it first)", "wake_stream");
    }
  }
  if (!root["lease_ttl_ms"].get(e) && !e.is_null()) {
    int64_t ttl = 0;
    if (e.get(ttl) || ttl < 1000 || ttl > 600000) {
      return Invalid("lease_ttl_ms", "lease_ttl_ms must be an integer from 1000 to 600000");
    }
    sub->lease_ttl_ms = ttl;
  }
  if (!root["description"].get(e) && !e.is_null()) {
    if (e.get(s)) return Invalid("description", "description must be a string");
    sub->description = std::string(s);
  }
  // §6.2: the hash of the normalized configuration decides 200 or 409.
  {
    std::string canon;
    auto field = [&](std::string_view v) {
      canon += std::to_string(v.size());
      canon.push_back(':');
      canon.append(v);
    };
    field(sub->type == Type::kWebhook ? "webhook" : "pull-wake");
    field(sub->pattern ? "1" + *sub->pattern : "0");
    field(std::to_string(sub->streams.size()));
    for (const std::string& p : sub->streams) field(p);
    field(sub->webhook_url);
    field(sub->wake_stream);
    field(std::to_string(sub->lease_ttl_ms));
    field(sub->description ? "1" + *sub->description : "0");
    sub->config_hash = HexDigest(Sha256(canon));
  }

  if (SubPtr existing = Find(id)) {
    std::lock_guard lock(existing->mu);
    if (!existing->deleted) {
      if (existing->config_hash != sub->config_hash) {
        return JsonError(409, "SUBSCRIPTION_EXISTS",
                         "a subscription with this id exists with a different configuration");
      }
      return JsonResponse(200, SubscriptionJson(*existing, request));
    }
  }

  const int64_t now = clock_->NowMs();
  sub->created_at_ms = now;
  sub->callback_base = std::string(request.header(DS_FIELD_REQUEST_BASE).value_or(""));
  // Explicit streams are linked at their tail.
  for (const std::string& p : sub->streams) {
    if (p == sub->wake_stream) continue;
    sub->links[p] = Link{false, true, host_->StreamTail(p).value_or(0)};
  }
  // Held until the subscription is linked and stored: the dispatcher and
  // other requests that find it wait (nobody else knows it yet, so taking
  // it cannot block here).
  std::lock_guard lock(sub->mu);
  {
    std::unique_lock rlock(registry_mu_);
    auto it = subs_.find(id);
    if (it != subs_.end()) {
      // Created concurrently: answer as a re-confirmation would.
      SubPtr other = it->second;
      rlock.unlock();
      std::lock_guard other_lock(other->mu);
      if (other->config_hash != sub->config_hash) {
        return JsonError(409, "SUBSCRIPTION_EXISTS",
                         "a subscription with this id exists with a different configuration");
      }
      return JsonResponse(200, SubscriptionJson(*other, request));
    }
    subs_[id] = sub;
    IndexAdd(*sub);
    count_.store(subs_.size(), std::memory_order_release);
  }
  // §6.2 backfill, after the pattern is indexed: a stream created from now
  // on is noted to the dispatcher (which links it when it gets sub->mu,
  // after us; linking an already linked stream changes nothing), and one
  // created before is in the listing. Listing first would lose a stream
  // created between the listing and the indexing. Backfilled streams are
  // linked at their tail: no replay.
  if (sub->pattern) {
    host_->ForEachStream([&](const std::string& path, uint64_t tail) {
      if (path == sub->wake_stream || !GlobMatch(*sub->pattern, path)) return;
      Link& link = sub->links[path];
      link.glob = true;
      link.acked = tail;
    });
  }
  std::vector<std::string> all;
  for (const auto& [path, link] : sub->links) all.push_back(path);
  // A leftover of an earlier subscription with this id goes with the write.
  if (store_ != nullptr && store_->durable()) {
    SubscriptionWrite erase;
    erase.id = id;
    erase.erase = true;
    Status s = store_->CommitSubscription(erase);
    if (s.ok()) s = Persist(*sub, all, {});
    if (!s.ok()) {
      sub->deleted = true;
      std::unique_lock rlock(registry_mu_);
      if (auto it = subs_.find(id); it != subs_.end() && it->second == sub) {
        IndexRemove(*sub);
        subs_.erase(it);
        count_.store(subs_.size(), std::memory_order_release);
      }
      return JsonError(500, "STORAGE_ERROR", "could not store the subscription: " + s.message());
    }
  }
  Response r = JsonResponse(201, SubscriptionJson(*sub, request));
  // Streams already behind their cursor (explicit links to streams with
  // data are at their tail, so normally none).
  Enqueue({Note{id, std::string(), false}});
  return r;
}

Response Subscriptions::Get(const Request& request, const std::string& id) {
  SubPtr sub = Find(id);
  if (sub == nullptr) return NotFound();
  std::lock_guard lock(sub->mu);
  if (sub->deleted) return NotFound();
  return JsonResponse(200, SubscriptionJson(*sub, request));
}

Response Subscriptions::Delete(const std::string& id) {
  SubPtr sub = Find(id);
  if (sub == nullptr) return NotFound();
  std::lock_guard lock(sub->mu);
  if (sub->deleted) return NotFound();
  // §6.3: everything in flight for it is fenced from now on (the object is
  // out of the registry and marked, so no callback finds a wake to match).
  // It leaves busy_ before count_: the append path's "every subscription
  // is busy" test may be too pessimistic for a moment, never too hopeful.
  sub->deleted = true;
  SetPhase(*sub, Phase::kIdle);
  sub->wake_id.clear();
  {
    std::unique_lock rlock(registry_mu_);
    if (auto it = subs_.find(id); it != subs_.end() && it->second == sub) {
      subs_.erase(it);
      IndexRemove(*sub);
      count_.store(subs_.size(), std::memory_order_release);
    }
  }
  if (store_ != nullptr && store_->durable()) {
    SubscriptionWrite w;
    w.id = id;
    w.erase = true;
    Status s = store_->CommitSubscription(w);
    if (!s.ok()) return JsonError(500, "STORAGE_ERROR", "could not delete the subscription: " + s.message());
  }
  {
    std::lock_guard out(outbox_mu_);
    outbox_.erase(std::remove_if(outbox_.begin(), outbox_.end(),
                                 [&](const WebhookJob& j) { return j.subscription_id == id; }),
                  outbox_.end());
  }
  return NoContent();
}

Response Subscriptions::AddStreams(const Request& request, const std::string& id) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded;
  simdjson::dom::element root;
  if (!ParseBody(request, &parser, &padded, &root)) return Invalid("body", "body must be a JSON object");
  simdjson::dom::array arr;
  if (root["streams"].get(arr)) return Invalid("streams", "streams must be an array of stream paths");
  std::vector<std::pair<std::string, uint64_t>> paths;
  for (auto item : arr) {
    std::string_view s;
    if (item.get(s) || !ValidStreamPath(s)) return Invalid("streams", "streams must be an array of stream paths");
    std::string p(s);
    paths.emplace_back(p, host_->StreamTail(p).value_or(0));
  }
  SubPtr sub = Find(id);
  if (sub == nullptr) return NotFound();
  std::vector<std::string> put;
  {
    std::lock_guard lock(sub->mu);
    if (sub->deleted) return NotFound();
    for (const auto& [path, tail] : paths) {
      if (path == sub->wake_stream) return Invalid("streams", "a subscription cannot link its own wake_stream");
      auto it = sub->links.find(path);
      if (it == sub->links.end()) {
        // §6.4: new explicit links start at the stream's tail.
        sub->links[path] = Link{false, true, tail};
      } else if (it->second.explicit_link) {
        continue;  // idempotent
      } else {
        it->second.explicit_link = true;  // keeps its cursor
      }
      put.push_back(path);
    }
    Status s = Persist(*sub, put, {});
    if (!s.ok()) return JsonError(500, "STORAGE_ERROR", "could not store the links: " + s.message());
  }
  {
    std::unique_lock lock(registry_mu_);
    for (const std::string& path : put) IndexExplicit(id, path, true);
  }
  return NoContent();
}

Response Subscriptions::RemoveStream(const std::string& id, const std::string& path) {
  SubPtr sub = Find(id);
  if (sub == nullptr) return NotFound();
  bool unindex = false;
  {
    std::lock_guard lock(sub->mu);
    if (sub->deleted) return NotFound();
    auto it = sub->links.find(path);
    if (it == sub->links.end() || !it->second.explicit_link) return NoContent();  // idempotent
    unindex = true;
    it->second.explicit_link = false;
    Status s;
    if (it->second.glob && sub->pattern && GlobMatch(*sub->pattern, path)) {
      s = Persist(*sub, {path}, {});  // the glob link stays (§6.4)
    } else {
      sub->links.erase(it);
      s = Persist(*sub, {}, {path});
    }
    if (!s.ok()) return JsonError(500, "STORAGE_ERROR", "could not store the links: " + s.message());
  }
  if (unindex) {
    std::unique_lock lock(registry_mu_);
    IndexExplicit(id, path, false);
  }
  return NoContent();
}

Response Subscriptions::Claim(const Request& request, const std::string& id) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded;
  simdjson::dom::element root;
  if (!ParseBody(request, &parser, &padded, &root)) return Invalid("body", "body must be a JSON object");
  std::string_view worker;
  if (root["worker"].get(worker) || worker.empty() || worker.size() > 200) {
    return Invalid("worker", "worker must be a non-empty string");
  }
  SubPtr sub = Find(id);
  if (sub == nullptr) return NotFound();
  const int64_t now = clock_->NowMs();
  std::lock_guard lock(sub->mu);
  if (sub->deleted) return NotFound();
  if (sub->type != Type::kPullWake) return Invalid("type", "only pull-wake subscriptions are claimed");
  ExpireIfDue(*sub, now);
  if (sub->phase == Phase::kLeased) {
    std::string b = "{\"error\":{\"code\":\"ALREADY_CLAIMED\",\"current_holder\":";
    AppendJsonString(&b, sub->holder);
    b += ",\"generation\":" + std::to_string(sub->generation) + "}}";
    return JsonResponse(409, std::move(b));
  }
  std::vector<std::pair<std::string, uint64_t>> tails;
  if (sub->phase == Phase::kWakeInFlight) {
    // Take the wake the workers were woken for.
    HasPending(*sub, &tails);
    SetPhase(*sub, Phase::kLeased);
    sub->snapshot = tails;
    sub->lease_expires_ms = now + sub->lease_ttl_ms;
  } else {
    Status s = IssueWake(*sub, now, /*claiming=*/true);
    if (!s.ok()) return JsonError(500, "STORAGE_ERROR", "could not store the claim: " + s.message());
    tails = sub->snapshot;
  }
  sub->holder = std::string(worker);
  Status s = PersistRecord(*sub);
  if (!s.ok()) return JsonError(500, "STORAGE_ERROR", "could not store the claim: " + s.message());
  AddTimer(sub->lease_expires_ms, sub->id);
  std::string b = "{\"wake_id\":";
  AppendJsonString(&b, sub->wake_id);
  b += ",\"generation\":" + std::to_string(sub->generation);
  b += ",\"token\":";
  AppendJsonString(&b, Token("claim", sub->id, sub->generation, sub->wake_id));
  b += ",\"streams\":" + StreamsJson(*sub, tails, true);
  b += ",\"lease_ttl_ms\":" + std::to_string(sub->lease_ttl_ms) + "}";
  return JsonResponse(200, std::move(b));
}

Response Subscriptions::Complete(const Request& request, const std::string& id, Completion kind) {
  // §12.9: the token comes in Authorization only.
  auto auth = request.header(DS_FIELD_AUTHORIZATION);
  std::string_view token;
  if (auth && auth->size() > 7 && (auth->substr(0, 7) == "Bearer " || auth->substr(0, 7) == "bearer ")) {
    token = auth->substr(7);
  }
  if (token.empty()) {
    Response r = JsonError(401, "UNAUTHORIZED", "Authorization: Bearer <token> is required");
    r.Set("Www-Authenticate", "Bearer");
    return r;
  }
  simdjson::dom::parser parser;
  simdjson::padded_string padded;
  simdjson::dom::element root;
  if (!ParseBody(request, &parser, &padded, &root)) return Invalid("body", "body must be a JSON object");
  std::string_view wake_id;
  if (root["wake_id"].get(wake_id) || wake_id.empty()) return Invalid("wake_id", "wake_id must be a string");
  uint64_t generation = 0;
  if (root["generation"].get(generation)) return Invalid("generation", "generation must be a non-negative integer");
  bool done = false;
  simdjson::dom::element e;
  if (!root["done"].get(e) && !e.is_null() && e.get(done)) return Invalid("done", "done must be a boolean");
  struct Ack {
    std::string stream;
    uint64_t offset;
  };
  std::vector<Ack> acks;
  if (kind != Completion::kRelease && !root["acks"].get(e) && !e.is_null()) {
    simdjson::dom::array arr;
    if (e.get(arr)) return Invalid("acks", "acks must be an array of {stream, offset}");
    size_t i = 0;
    for (auto item : arr) {
      const std::string at = "acks[" + std::to_string(i++) + "]";
      std::string_view stream, offset;
      if (!item.is_object() || item["stream"].get(stream)) return Invalid(at + ".stream", "stream must be a string");
      if (item["offset"].get(offset)) return Invalid(at + ".offset", "offset must be an offset string");
      std::optional<uint64_t> pos = DecodeOffset(offset);
      if (!pos) return Invalid(at + ".offset", "offset is not an offset of this server");
      acks.push_back(Ack{std::string(stream), *pos});
    }
  }
  const std::string_view token_kind = kind == Completion::kCallback ? "cb" : "claim";
  // The token proves the server issued it for this subscription, generation
  // and wake (constant-time comparison); whether that wake is still the
  // current one is checked below.
  if (!ConstantTimeEqual(token, Token(token_kind, id, generation, wake_id))) {
    Response r = JsonError(401, "INVALID_TOKEN", "the token is not valid for this wake");
    r.Set("Www-Authenticate", "Bearer error=\"invalid_token\"");
    return r;
  }
  SubPtr sub = Find(id);
  if (sub == nullptr) return Fenced();  // deleted: fenced, cursors untouched
  const int64_t now = clock_->NowMs();
  bool next_wake = false;
  {
    std::lock_guard lock(sub->mu);
    if (sub->deleted) return Fenced();
    const bool want_webhook = kind == Completion::kCallback;
    if ((sub->type == Type::kWebhook) != want_webhook) {
      return Invalid("type", want_webhook ? "callback is for webhook subscriptions"
                                          : "ack and release are for pull-wake subscriptions");
    }
    ExpireIfDue(*sub, now);
    const Phase active = want_webhook ? Phase::kWakeInFlight : Phase::kLeased;
    if (sub->phase != active || sub->generation != generation || sub->wake_id != wake_id) {
      return Fenced();
    }
    // Validate every ack before applying any.
    for (size_t i = 0; i < acks.size(); ++i) {
      auto it = sub->links.find(acks[i].stream);
      if (it == sub->links.end()) {
        return Invalid("acks[" + std::to_string(i) + "].stream", "stream is not linked to this subscription");
      }
      std::optional<uint64_t> tail = host_->StreamTail(acks[i].stream);
      if (!tail || acks[i].offset > *tail) {
        return Invalid("acks[" + std::to_string(i) + "].offset", "offset is past the stream's tail");
      }
    }
    std::vector<std::string> put;
    for (const Ack& ack : acks) {
      Link& link = sub->links[ack.stream];
      if (ack.offset > link.acked) {  // inclusive, and never backwards
        link.acked = ack.offset;
        put.push_back(ack.stream);
      }
    }
    const bool release = done || kind == Completion::kRelease;
    if (release) {
      SetPhase(*sub, Phase::kIdle);
      sub->holder.clear();
      sub->wake_id.clear();
      sub->snapshot.clear();
      sub->lease_expires_ms = 0;
      next_wake = HasPending(*sub, nullptr);
    } else {
      sub->lease_expires_ms = now + sub->lease_ttl_ms;  // heartbeat (§7.2, §7.3)
    }
    // Answered only once stored: an acknowledged ack survives a crash.
    Status s = Persist(*sub, put, {});
    if (!s.ok()) return JsonError(500, "STORAGE_ERROR", "could not store the ack: " + s.message());
    if (!release) AddTimer(sub->lease_expires_ms, sub->id);
  }
  if (next_wake) Enqueue({Note{id, std::string(), false}});
  if (kind == Completion::kRelease) return NoContent();
  return JsonResponse(200, next_wake ? "{\"ok\":true,\"next_wake\":true}" : "{\"ok\":true,\"next_wake\":false}");
}

}  // namespace ds
