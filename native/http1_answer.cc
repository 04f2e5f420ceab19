#include "http1_answer.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <utility>
#include <vector>

namespace ds {
namespace {

struct Field {
  std::string_view name;
  std::vector<std::string_view> values;
};

Field* Find(std::vector<Field>& fields, std::string_view name) {
  for (Field& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void Erase(std::vector<Field>& fields, std::string_view name) {
  fields.erase(std::remove_if(fields.begin(), fields.end(),
                              [&](const Field& f) { return f.name == name; }),
               fields.end());
}

// net/http's StatusText for the statuses a long-poll can end with.
std::string_view StatusText(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 410: return "Gone";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "";
  }
}

bool BodyAllowed(int status) {
  return status >= 200 && status != 204 && status != 304;
}

// textproto.TrimString after headerNewlineToSpace.
void AppendValue(std::string_view v, std::string* out) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!v.empty() && blank(v.front())) v.remove_prefix(1);
  while (!v.empty() && blank(v.back())) v.remove_suffix(1);
  for (char c : v) out->push_back(c == '\n' || c == '\r' ? ' ' : c);
}

void AppendHttpDate(int64_t unix_seconds, std::string* out) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                        tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                        tm.tm_sec);
  out->append(buf, static_cast<size_t>(n));
}

}  // namespace

std::string RenderHttp1Answer(std::string_view middleware_headers, const Response& response,
                              int64_t now_unix_seconds, bool keep_alive) {
  std::vector<Field> fields;
  fields.reserve(24);
  while (!middleware_headers.empty()) {
    size_t name_end = middleware_headers.find('\0');
    if (name_end == std::string_view::npos) break;
    std::string_view name = middleware_headers.substr(0, name_end);
    middleware_headers.remove_prefix(name_end + 1);
    size_t value_end = middleware_headers.find('\0');
    std::string_view value = middleware_headers.substr(0, value_end);
    middleware_headers.remove_prefix(value_end == std::string_view::npos ? middleware_headers.size()
                                                                         : value_end + 1);
    if (Field* f = Find(fields, name)) {
      f->values.push_back(value);
    } else {
      fields.push_back({name, {value}});
    }
  }

  // writeHeader (serve.go).
  std::vector<std::string_view> set;
  for (const auto& [name, value] : response.headers) {
    if (std::find(set.begin(), set.end(), name) != set.end()) {
      Find(fields, name)->values.push_back(value);
      continue;
    }
    Field* f = Find(fields, name);
    if (name.starts_with("Access-Control-") && f != nullptr && !f->values.empty()) continue;
    if (f == nullptr) {
      fields.push_back({name, {}});
      f = &fields.back();
    }
    f->values.assign(1, value);
    set.push_back(name);
  }
  const int status = response.status;
  char length[24];
  std::string_view length_view;
  if (BodyAllowed(status)) {
    int n = std::snprintf(length, sizeof length, "%zu", response.body.size());
    length_view = std::string_view(length, static_cast<size_t>(n));
    if (Find(fields, "Content-Length") == nullptr) fields.push_back({"Content-Length", {length_view}});
  }
  // Closing: net/http keeps a Connection header that already says close,
  // else drops it and adds its own after Date.
  bool add_close = false;
  if (!keep_alive) {
    Field* f = Find(fields, "Connection");
    bool says_close = false;
    if (f != nullptr && !f->values.empty()) {
      std::string lower(f->values.front());
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      says_close = lower.find("close") != std::string::npos;
    }
    if (!says_close) {
      Erase(fields, "Connection");
      add_close = true;
    }
  }

  // net/http's chunkWriter.writeHeader.
  if (!BodyAllowed(status)) {
    Erase(fields, "Content-Length");
    Erase(fields, "Transfer-Encoding");
    if (status == 304) Erase(fields, "Content-Type");
  }
  std::sort(fields.begin(), fields.end(),
            [](const Field& a, const Field& b) { return a.name < b.name; });

  std::string out;
  out.reserve(512 + response.body.size());
  out.append("HTTP/1.1 ");
  std::string_view text = StatusText(status);
  char code[48];
  if (!text.empty()) {
    int n = std::snprintf(code, sizeof code, "%d ", status);
    out.append(code, static_cast<size_t>(n));
    out.append(text);
  } else {
    int n = std::snprintf(code, sizeof code, "%03d status code %d", status, status);
    out.append(code, static_cast<size_t>(n));
  }
  out.append("\r\n");
  bool have_date = false;
  for (const Field& f : fields) {
    if (f.name == "Date") have_date = true;
    for (std::string_view v : f.values) {
      out.append(f.name);
      out.append(": ");
      AppendValue(v, &out);
      out.append("\r\n");
    }
  }
  if (!have_date) {
    out.append("Date: ");
    AppendHttpDate(now_unix_seconds, &out);
    out.append("\r\n");
  }
  if (add_close) out.append("Connection: close\r\n");
  out.append("\r\n");
  if (BodyAllowed(status)) out.append(response.body);
  return out;
}

}  // namespace ds
