#include "content_type.h"

namespace ds {

std::string MediaType(std::string_view content_type) {
  size_t semi = content_type.find(';');
  std::string_view type = content_type.substr(0, semi);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) {
    type.remove_prefix(1);
  }
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) {
    type.remove_suffix(1);
  }
  std::string out(type);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool SameMediaType(std::string_view a, std::string_view b) {
  return MediaType(a) == MediaType(b);
}

bool IsJsonMediaType(std::string_view content_type) {
  return MediaType(content_type) == "application/json";
}

bool IsSseTextType(std::string_view content_type) {
  std::string type = MediaType(content_type);
  return type.rfind("text/", 0) == 0 || type == "application/json";
}

}  // namespace ds
