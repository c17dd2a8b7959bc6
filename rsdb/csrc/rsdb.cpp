#include "rsdb.hpp"

namespace rsdb {

int core_version() { return kStateVersion; }

}  // namespace rsdb
