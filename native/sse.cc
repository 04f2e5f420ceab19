#include "sse.h"

#include "base64.h"

namespace ds {
namespace {

void AppendDataLine(std::string_view line, std::string* out) {
  out->append("data:");
  out->append(line);
  out->push_back('\n');
}

}  // namespace

void AppendSseData(std::string_view payload, SseDataEncoding encoding,
                   std::string* out) {
  out->append("event: data\n");
  if (encoding == SseDataEncoding::kBase64) {
    std::string encoded;
    AppendBase64(payload, &encoded);
    constexpr size_t kLine = 76;
    if (encoded.empty()) AppendDataLine({}, out);
    for (size_t i = 0; i < encoded.size(); i += kLine) {
      AppendDataLine(std::string_view(encoded).substr(i, kLine), out);
    }
  } else {
    // Every CR, LF and CRLF ends an SSE line, so each becomes a new `data:`
    // line; the client rejoins them with LF.
    size_t start = 0;
    for (size_t i = 0; i < payload.size(); ++i) {
      char c = payload[i];
      if (c == '\n' || c == '\r') {
        AppendDataLine(payload.substr(start, i - start), out);
        if (c == '\r' && i + 1 < payload.size() && payload[i + 1] == '\n') ++i;
        start = i + 1;
      }
    }
    AppendDataLine(payload.substr(start), out);
  }
  out->push_back('\n');
}

void AppendSseControl(const SseControl& control, std::string* out) {
  // Offsets and cursors are digits only, so they need no JSON escaping.
  out->append("event: control\ndata:{\"streamNextOffset\":\"");
  out->append(control.next_offset);
  out->push_back('"');
  if (!control.cursor.empty()) {
    out->append(",\"streamCursor\":\"");
    out->append(control.cursor);
    out->push_back('"');
  }
  if (control.up_to_date) out->append(",\"upToDate\":true");
  if (control.closed) out->append(",\"streamClosed\":true");
  // The id is the same offset, so a plain EventSource that reconnects on
  // its own sends it back as Last-Event-ID and resumes right after this
  // event (read.cc). Data events carry none: the id stays the last control
  // event's, the point a client has fully received. It follows the data
  // line because clients (and the conformance suite) expect `data:` right
  // after `event: control`; SSE applies fields in any order at the blank line.
  out->append("}\nid: ");
  out->append(control.next_offset);
  out->append("\n\n");
}

void AppendSseKeepalive(std::string* out) { out->append(":\n\n"); }

}  // namespace ds
