// Argument validation shared by every entry point, run once before dispatch. Each check that fails throws a
// dlk::Error whose sentence names the op, the argument, and the expected and actual values, e.g.
//   "softmax_forward: mask shape [4,1,7] does not broadcast to [4,8,8] (dim 2: 7 vs 8)".
#pragma once

#include <dlk/dlk.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>

#include "runtime/context.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

namespace dlk {

std::string shape_string(const DLTensor* t);
std::string device_string(DLDevice d);

class Check {
 public:
  Check(const char* op, const dlk_context* ctx) : op_(op), ctx_(ctx) {}

  template <typename... Parts>
  [[noreturn]] void fail(dlk_status status, const Parts&... parts) const {
    ::dlk::fail(status, op_, ": ", parts...);
  }

  // A required tensor: non-null, rank in [min_ndim, max_ndim], non-negative shape whose element and byte counts fit
  // in int64, data non-null unless empty, dtype known, and addressable by the context's backend. Returns its dtype.
  DType tensor(const DLTensor* t, const char* name, int min_ndim = 0, int max_ndim = kMaxDims) const;
  // tensor() plus compact row-major strides (or NULL strides).
  DType contiguous(const DLTensor* t, const char* name, int min_ndim = 0, int max_ndim = kMaxDims) const;
  void dtype_in(const DLTensor* t, const char* name, std::initializer_list<DType> allowed) const;
  void same_dtype(const DLTensor* a, const char* an, const DLTensor* b, const char* bn) const;
  void same_shape(const DLTensor* a, const char* an, const DLTensor* b, const char* bn) const;
  // `t` must have exactly `shape` (ndim entries); `what` describes where the expectation comes from.
  void shape_is(const DLTensor* t, const char* name, const std::int64_t* shape, int ndim, const char* what) const;
  void finite(double value, const char* name) const;
  void params_size(std::size_t given, std::size_t minimum, const char* name) const;
  // Output must not overlap an input unless it is exactly the same buffer (in-place).
  void no_partial_overlap(const DLTensor* out, const char* on, const DLTensor* in, const char* in_name) const;

  const char* op() const { return op_; }

 private:
  const char* op_;
  const dlk_context* ctx_;
};

// The integer a caller stored in a C enum field. Read through memcpy: a caller may store any int there, and loading
// an out-of-range value as the enum type is undefined behaviour in C++.
template <typename Enum>
int enum_value(const Enum& e) {
  static_assert(sizeof(Enum) == sizeof(int), "C enums are int-sized");
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// Element strides of `t` (compact row-major when t->strides is NULL).
void strides_of(const DLTensor* t, std::int64_t* out);

}  // namespace dlk
