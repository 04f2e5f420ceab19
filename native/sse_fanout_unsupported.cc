// The SSE fan-out where there is no epoll (macOS, Windows): it starts no
// thread and refuses every adoption, so the socket stays with the HTTP
// layer, which on these systems never offers one (sse_takeover is Linux
// only: caddymodule/takeover_other.go). Live SSE still works there, served
// by the HTTP layer's own loop.
#include "sse_fanout.h"

#if !defined(__linux__)

#include <utility>

namespace ds {

struct SseFanout::Subscriber {};
struct SseFanout::Group {};

SseFanout::SseFanout(SseSource* source, std::shared_ptr<const Clock> clock, Options options)
    : source_(source),
      clock_(std::move(clock)),
      options_(options),
      keepalive_(std::make_shared<const std::string>()),
      terminator_(std::make_shared<const std::string>()),
      init_(Status::NotSupported("SSE connection takeover needs epoll (Linux)")) {}

SseFanout::~SseFanout() = default;

// The adoption (and its socket) is dropped: the fan-out owns it whatever
// happens.
Status SseFanout::Adopt(SseAdoption adoption) {
  (void)adoption;
  return init_;
}

void SseFanout::Wake(const std::vector<uint64_t>& waiters) { (void)waiters; }
void SseFanout::EndOwner(uint64_t owner) { (void)owner; }
void SseFanout::RunOnce(int max_wait_ms) { (void)max_wait_ms; }

}  // namespace ds

#endif  // !__linux__
