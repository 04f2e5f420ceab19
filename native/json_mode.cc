#include "json_mode.h"

#include <optional>

#include <simdjson.h>

namespace ds {
namespace {

// Bodies up to this size are parsed by the thread's reused parser.
constexpr size_t kReusedJsonParserMaxBytes = 1 << 20;

bool IsJsonSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsJsonSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsJsonSpace(s.back())) s.remove_suffix(1);
  return s;
}

void AppendMessage(std::string_view text, std::string* out) {
  size_t start = out->size();
  out->append(text);
  for (size_t i = start; i < out->size(); ++i) {
    char& c = (*out)[i];
    if (c == '\n' || c == '\r') c = ' ';
  }
  out->push_back('\n');
}

// Calls `emit` with each top-level element of the (already validated) JSON
// array text `array`, which starts with '['.
template <typename Emit>
void ForEachElement(std::string_view array, Emit emit) {
  int depth = 0;
  bool in_string = false;
  size_t element_start = 1;
  for (size_t i = 0; i < array.size(); ++i) {
    char c = array[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        ++depth;
        break;
      case ']':
      case '}':
        if (--depth == 0) {
          std::string_view last = Trim(array.substr(element_start, i - element_start));
          if (!last.empty()) emit(last);
          return;
        }
        break;
      case ',':
        if (depth == 1) {
          emit(Trim(array.substr(element_start, i - element_start)));
          element_start = i + 1;
        }
        break;
      default:
        break;
    }
  }
}

}  // namespace

std::string EncodeJsonMessages(std::string_view body, JsonAppendKind kind,
                               std::string* out, size_t* messages) {
  *messages = 0;
  // One parser per thread: parsers are not thread-safe and reusing one
  // avoids reallocating its buffers on every append.
  // A large body gets a parser of its own, freed on return: the thread's
  // parser keeps the capacity of the largest document it has seen (its
  // tape and string buffer, several times the text), which would leave
  // every engine thread holding that much after one large append.
  thread_local simdjson::dom::parser reused;
  std::optional<simdjson::dom::parser> own;
  simdjson::dom::parser* parser = &reused;
  if (body.size() > kReusedJsonParserMaxBytes) parser = &own.emplace();
  simdjson::dom::element root;
  auto error = parser->parse(body.data(), body.size(), true).get(root);
  if (error) {
    return std::string("invalid JSON: ") + simdjson::error_message(error);
  }
  std::string_view text = Trim(body);
  if (root.type() != simdjson::dom::element_type::ARRAY) {
    AppendMessage(text, out);
    *messages = 1;
    return {};
  }
  size_t start = out->size();
  size_t count = 0;
  ForEachElement(text, [&](std::string_view element) {
    AppendMessage(element, out);
    ++count;
  });
  if (count == 0 && kind == JsonAppendKind::kAppend) {
    out->resize(start);
    return "empty JSON array: nothing to append";
  }
  *messages = count;
  return {};
}

void AppendJsonArray(std::string_view stored, std::string* out) {
  out->reserve(out->size() + stored.size() + 2);
  out->push_back('[');
  size_t start = out->size();
  out->append(stored);
  if (!stored.empty()) {
    // Every message ends in '\n': the last becomes ']', the others ','.
    for (size_t i = start; i < out->size(); ++i) {
      if ((*out)[i] == '\n') (*out)[i] = ',';
    }
    out->back() = ']';
  } else {
    out->push_back(']');
  }
}

size_t JsonChunkLength(std::string_view stored, size_t cap) {
  if (stored.size() <= cap) return stored.size();
  size_t cut = stored.rfind('\n', cap == 0 ? 0 : cap - 1);
  if (cut != std::string_view::npos && cut < cap) return cut + 1;
  size_t first = stored.find('\n');
  return first == std::string_view::npos ? stored.size() : first + 1;
}

}  // namespace ds
