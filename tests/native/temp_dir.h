// A directory under /tmp that lives as long as the test needs it.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "file_util.h"

namespace ds::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ds_engine_test.XXXXXX";
    char* p = ::mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    if (!path_.empty()) RemoveTree(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace ds::testing
