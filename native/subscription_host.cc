// The engine's side of subscriptions (SubscriptionHost, subscriptions.h):
// committed tails, the stream listing for backfill, and wake events
// appended through the ordinary append path.
#include "engine.h"
#include "request.h"

namespace ds {

std::optional<uint64_t> Engine::StreamTail(const std::string& path) {
  const std::string full = options_.stream_root + "/" + path;
  StreamPtr stream;
  {
    std::shared_lock lock(registry_mu_);
    auto it = streams_.find(full);
    if (it == streams_.end()) return std::nullopt;
    stream = it->second;
  }
  // `tail` is the committed tail, readable without the stream's lock.
  return stream->tail.load(std::memory_order_acquire);
}

void Engine::ForEachStream(const std::function<void(const std::string& path, uint64_t tail)>& fn) {
  const std::string prefix = options_.stream_root + "/";
  std::vector<std::pair<std::string, uint64_t>> all;
  {
    std::shared_lock lock(registry_mu_);
    all.reserve(streams_.size());
    for (const auto& [path, stream] : streams_) {
      if (path.compare(0, prefix.size(), prefix) != 0) continue;
      all.emplace_back(path.substr(prefix.size()), stream->tail.load(std::memory_order_acquire));
    }
  }
  for (const auto& [path, tail] : all) fn(path, tail);
}

int Engine::AppendWakeEvents(const std::string& path, const std::vector<std::string>& events) {
  if (events.empty()) return 204;
  const std::string full = options_.stream_root + "/" + path;
  std::string content_type;
  bool json = false;
  {
    std::shared_lock lock(registry_mu_);
    auto it = streams_.find(full);
    if (it == streams_.end()) return 404;
    content_type = it->second->config.content_type;
    json = it->second->json;
  }
  // A JSON stream takes the events as messages of one array; any other gets
  // them as newline-delimited JSON.
  std::string body;
  if (json) {
    body = "[";
    for (size_t i = 0; i < events.size(); ++i) {
      if (i > 0) body.push_back(',');
      body += events[i];
    }
    body += "]";
  } else {
    for (const std::string& e : events) body += e + "\n";
  }
  Request request;
  request.method = "POST";
  request.path = full;
  request.fields[DS_FIELD_CONTENT_TYPE] = std::string_view(content_type);
  request.body = body;
  // No session: a durable append waits here for its commit.
  Response response = Append(request, 0);
  return response.status;
}

void Engine::NoteSubscriptionData(const std::string& path, bool created) {
  const std::string_view root = options_.stream_root;
  if (path.size() > root.size() + 1 && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/') {
    const std::string_view rel = std::string_view(path).substr(root.size() + 1);
    if (created) {
      subscriptions_->NoteCreated(rel);
    } else {
      subscriptions_->NoteAppend(rel);
    }
  }
}

}  // namespace ds
