// The one error type used inside the library. Validation and launchers throw dlk::Error; capi/guard.cpp turns it
// into a dlk_status and the thread-local dlk_last_error() sentence, so nothing escapes the C ABI.
#pragma once

#include <dlk/dlk.h>

#include <exception>
#include <sstream>
#include <string>
#include <utility>

namespace dlk {

class Error : public std::exception {
 public:
  Error(dlk_status status, std::string message) : status_(status), message_(std::move(message)) {}
  dlk_status status() const noexcept { return status_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  dlk_status status_;
  std::string message_;
};

// fail(DLK_ERROR_SHAPE, "softmax: mask dim ", 1, " is ", 7, ", expected 1 or ", 8)
template <typename... Parts>
[[noreturn]] void fail(dlk_status status, const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  throw Error(status, out.str());
}

}  // namespace dlk
