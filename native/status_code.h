// The one table from storage outcomes (Status) to ABI codes (ds_code), for
// every C entry point that reports a Status.
#pragma once

#include "durable_streams.h"
#include "status.h"

namespace ds {

inline ds_code CodeOf(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk: return DS_OK;
    case Status::Code::kLocked: return DS_ERR_LOCKED;
    case Status::Code::kNotSupported: return DS_ERR_NOT_SUPPORTED;
    case Status::Code::kInvalidArgument: return DS_ERR_INVALID_ARGUMENT;
    case Status::Code::kIoError:
    case Status::Code::kNoSpace:
    case Status::Code::kCorruption: return DS_ERR_IO;
    case Status::Code::kGone: return DS_ERR_INTERNAL;  // requests answer it as 410
  }
  return DS_ERR_INTERNAL;
}

}  // namespace ds
