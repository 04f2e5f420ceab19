#include "request.h"

namespace ds {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < in.size() && HexValue(in[i + 1]) >= 0 && HexValue(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

ReadParams ParseReadParams(std::string_view query) {
  ReadParams params;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq));
    std::string value =
        eq == std::string_view::npos ? std::string{} : PercentDecode(pair.substr(eq + 1));
    std::optional<std::string>* slot = nullptr;
    if (key == "offset") slot = &params.offset;
    else if (key == "live") slot = &params.live;
    else if (key == "cursor") slot = &params.cursor;
    if (slot == &params.offset && slot->has_value()) params.offset_repeated = true;
    if (slot != nullptr && !slot->has_value()) *slot = std::move(value);
  }
  return params;
}

bool HeaderIsTrue(const std::optional<std::string_view>& value) {
  if (!value || value->size() != 4) return false;
  static constexpr char kTrue[] = "true";
  for (size_t i = 0; i < 4; ++i) {
    char c = (*value)[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kTrue[i]) return false;
  }
  return true;
}

bool IsSafeStreamPath(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  if (path.find('\0') != std::string_view::npos) return false;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view segment = path.substr(start, slash - start);
    if (segment == "." || segment == "..") return false;
    start = slash + 1;
  }
  return true;
}

}  // namespace ds
