// nanobind glue only: the algorithm lives in rsdb.cpp.
#include <nanobind/nanobind.h>

#include "rsdb.hpp"

namespace nb = nanobind;

NB_MODULE(_core, m) {
  m.doc() = "RSDB compiled core (private; import rsdb instead)";
  m.def("core_version", &rsdb::core_version);
}
