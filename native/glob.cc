#include "glob.h"

#include <vector>

namespace ds {
namespace {

std::vector<std::string_view> Split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view path) {
  const std::vector<std::string_view> ps = Split(pattern);
  const std::vector<std::string_view> ss = Split(path);
  // reach[j]: the pattern segments seen so far can match the first j path
  // segments.
  std::vector<char> reach(ss.size() + 1, 0), next(ss.size() + 1, 0);
  reach[0] = 1;
  for (std::string_view p : ps) {
    std::fill(next.begin(), next.end(), 0);
    if (p == "**") {
      char any = 0;
      for (size_t j = 0; j < reach.size(); ++j) {
        any = any || reach[j];
        next[j] = any;
      }
    } else {
      for (size_t j = 1; j <= ss.size(); ++j) {
        if (reach[j - 1] && (p == "*" || p == ss[j - 1])) next[j] = 1;
      }
    }
    reach.swap(next);
  }
  return reach[ss.size()] != 0;
}

bool ValidGlob(std::string_view pattern) {
  if (pattern.empty() || pattern.size() > 1024) return false;
  for (std::string_view seg : Split(pattern)) {
    if (seg.empty() || seg == "." || seg == "..") return false;
    if (seg != "*" && seg != "**" && seg.find('*') != std::string_view::npos) return false;
  }
  return true;
}

std::string_view FirstSegment(std::string_view path) {
  size_t slash = path.find('/');
  return slash == std::string_view::npos ? path : path.substr(0, slash);
}

std::string_view GlobFirstLiteral(std::string_view pattern) {
  std::string_view first = FirstSegment(pattern);
  return first == "*" || first == "**" ? std::string_view() : first;
}

}  // namespace ds
