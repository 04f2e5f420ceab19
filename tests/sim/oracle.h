// The oracle: opens a materialized crash state through the real store and
// recovery and checks it against what the workload did (model.h).
#pragma once

#include <string>
#include <vector>

#include "model.h"

namespace dssim {

struct Finding {
  bool violation;    // false: a documented weakness of the fsync policy
  std::string kind;  // short label, e.g. "wrong-bytes", "producer-ahead"
  std::string text;
};

// `root` holds the crash state at log position `point`: the data
// directory `data` and the backups the workload made.
std::vector<Finding> CheckCrashState(const Model& model, uint64_t point, const std::string& root);

}  // namespace dssim
