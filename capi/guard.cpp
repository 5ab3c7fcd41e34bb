#include "capi/guard.h"

#include <cstring>

namespace {
// A trivially destructible buffer: a context destroyed from a static destructor may still set or clear the error
// after the thread's non-trivial thread_locals are gone. Messages longer than the buffer are truncated.
thread_local char t_last_error[2048];
}  // namespace

namespace dlk {
void set_last_error(const std::string& message) {
  std::size_t n = message.size() < sizeof(t_last_error) - 1 ? message.size() : sizeof(t_last_error) - 1;
  std::memcpy(t_last_error, message.data(), n);
  t_last_error[n] = '\0';
}
void clear_last_error() { t_last_error[0] = '\0'; }
}  // namespace dlk

extern "C" DLK_API const char* dlk_last_error(void) { return t_last_error; }
