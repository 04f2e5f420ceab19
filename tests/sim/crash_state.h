// Builds the on-disk state a power loss at a point of the recorded op log
// could leave, under the fault model of STORAGE_FORMAT.md ("Fault model and
// simulation"), and writes it into an empty directory.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "oplog.h"

namespace dssim {

struct CrashChoice {
  uint64_t point = 0;    // ops [0, point) happened; the rest did not
  uint64_t variant = 0;  // 0: only what was synced; 1: everything; >= 2: seeded random
};

struct CrashStats {
  uint64_t required = 0, optional = 0, kept = 0, torn = 0, dropped = 0;
};

// `ordered_prefix`: files whose path starts with it lose unsynced writes
// only as a suffix in issue order (the last kept one possibly torn): what
// LMDB under MDB_NOSYNC needs of the file system (STORAGE_FORMAT.md). Empty:
// every file is fully adversarial.
bool MaterializeCrashState(const OpLog& log, const CrashChoice& choice, uint64_t seed,
                           const std::string& ordered_prefix, const std::string& dest,
                           CrashStats* stats, std::string* error);

}  // namespace dssim
