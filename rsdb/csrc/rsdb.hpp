// RSDB core: plain C++17, no Python or nanobind includes (bindings.cpp holds the glue).
#pragma once
#include <cstdint>

namespace rsdb {

// Bumped whenever the state_dict layout changes.
constexpr int kStateVersion = 1;

int core_version();

}  // namespace rsdb
