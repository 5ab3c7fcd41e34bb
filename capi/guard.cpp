#include "capi/guard.h"

namespace {
thread_local std::string t_last_error;
}

namespace dlk {
void set_last_error(const std::string& message) { t_last_error = message; }
void clear_last_error() { t_last_error.clear(); }
}  // namespace dlk

extern "C" DLK_API const char* dlk_last_error(void) { return t_last_error.c_str(); }
