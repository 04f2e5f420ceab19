// Status: the outcome of a storage operation, LevelDB style. No exceptions
// on the data path; callers check ok() and map codes to HTTP in one place.
#pragma once

#include <string>
#include <utility>

namespace ds {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kIoError,          // a read/write/fsync failed
    kNoSpace,          // the disk is full (ENOSPC, MDB_MAP_FULL beyond limits)
    kCorruption,       // stored data contradicts itself
    kInvalidArgument,  // a bad option or call
    kLocked,           // another process holds the data directory
    kNotSupported,
    kGone,             // positions dropped by retention (read them: 410)
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status IoError(std::string msg) { return Status(Code::kIoError, std::move(msg)); }
  static Status NoSpace(std::string msg) { return Status(Code::kNoSpace, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status InvalidArgument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status Locked(std::string msg) { return Status(Code::kLocked, std::move(msg)); }
  static Status NotSupported(std::string msg) {
    return Status(Code::kNotSupported, std::move(msg));
  }

  static Status Gone(std::string msg) { return Status(Code::kGone, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace ds
