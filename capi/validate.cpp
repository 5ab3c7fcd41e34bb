#include "capi/validate.h"

#include <sstream>

namespace dlk {

std::string shape_string(const DLTensor* t) {
  std::ostringstream s;
  s << '[';
  for (int i = 0; i < t->ndim; ++i) s << (i ? "," : "") << t->shape[i];
  s << ']';
  return s.str();
}

std::string device_string(DLDevice d) {
  std::ostringstream s;
  switch (d.device_type) {
    case kDLCPU: s << "cpu"; break;
    case kDLCUDA: s << "cuda:" << d.device_id; break;
    case kDLCUDAHost: s << "cuda_host"; break;
    case kDLCUDAManaged: s << "cuda_managed:" << d.device_id; break;
    default: s << "device_type " << static_cast<int>(d.device_type); break;
  }
  return s.str();
}

void strides_of(const DLTensor* t, std::int64_t* out) {
  std::int64_t acc = 1;
  for (int i = t->ndim - 1; i >= 0; --i) {
    out[i] = t->strides ? t->strides[i] : acc;
    acc *= t->shape[i];
  }
}

static const char* backend_name(Backend b) {
  switch (b) {
    case Backend::Cpu: return "cpu";
    case Backend::Cuda: return "cuda";
    case Backend::Emu: return "emu";
  }
  return "?";
}

DType Check::tensor(const DLTensor* t, const char* name, int min_ndim, int max_ndim) const {
  if (!t) fail(DLK_ERROR_INVALID_ARGUMENT, name, " is NULL");
  if (t->ndim < min_ndim || t->ndim > max_ndim) {
    if (min_ndim == max_ndim)
      fail(DLK_ERROR_SHAPE, name, " has rank ", t->ndim, ", expected ", min_ndim);
    fail(DLK_ERROR_SHAPE, name, " has rank ", t->ndim, ", expected ", min_ndim, " to ", max_ndim);
  }
  if (t->ndim > 0 && !t->shape) fail(DLK_ERROR_INVALID_ARGUMENT, name, " has rank ", t->ndim, " but shape is NULL");
  DType dt = dtype_of(t->dtype);
  if (dt == DType::Unknown)
    fail(DLK_ERROR_DTYPE, name, " has unsupported dtype (code ", int(t->dtype.code), ", bits ", int(t->dtype.bits),
         ", lanes ", t->dtype.lanes, ")");
  std::int64_t n = 1;
  for (int i = 0; i < t->ndim; ++i) {
    std::int64_t d = t->shape[i];
    if (d < 0) fail(DLK_ERROR_SHAPE, name, " has negative size ", d, " in dim ", i, " (shape ", shape_string(t), ")");
    if (d != 0 && n > INT64_MAX / d)
      fail(DLK_ERROR_OVERFLOW, name, " shape ", shape_string(t), " has more than 2^63 elements");
    n *= d;
  }
  std::int64_t esize = static_cast<std::int64_t>(dtype_size(dt));
  if (n > INT64_MAX / esize) fail(DLK_ERROR_OVERFLOW, name, " shape ", shape_string(t), " needs more than 2^63 bytes");
  if (n > 0 && !t->data) fail(DLK_ERROR_INVALID_ARGUMENT, name, " has ", n, " elements but data is NULL");
  if (t->strides) {
    for (int i = 0; i < t->ndim; ++i)
      if (t->strides[i] < 0) fail(DLK_ERROR_LAYOUT, name, " has negative stride ", t->strides[i], " in dim ", i);
  }
  if (ctx_) {
    DLDeviceType dev = t->device.device_type;
    if (ctx_->backend == Backend::Cuda) {
      bool ok = (dev == kDLCUDA || dev == kDLCUDAManaged) && t->device.device_id == ctx_->device_index;
      if (!ok)
        fail(DLK_ERROR_DEVICE, name, " is on ", device_string(t->device), " but the context runs on cuda:",
             ctx_->device_index);
    } else {
      bool ok = dev == kDLCPU || dev == kDLCUDAHost || dev == kDLCUDAManaged;
      if (!ok)
        fail(DLK_ERROR_DEVICE, name, " is on ", device_string(t->device), " but the context runs on ",
             backend_name(ctx_->backend), " and needs host memory (kDLCPU)");
    }
  }
  return dt;
}

DType Check::contiguous(const DLTensor* t, const char* name, int min_ndim, int max_ndim) const {
  DType dt = tensor(t, name, min_ndim, max_ndim);
  if (t->strides) {
    std::int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; --i) {
      if (t->shape[i] != 1 && t->strides[i] != expect) {
        std::ostringstream s;
        s << '[';
        for (int k = 0; k < t->ndim; ++k) s << (k ? "," : "") << t->strides[k];
        s << ']';
        fail(DLK_ERROR_LAYOUT, name, " must be contiguous: strides ", s.str(), " for shape ", shape_string(t),
             " (dim ", i, " has stride ", t->strides[i], ", expected ", expect, ")");
      }
      expect *= t->shape[i];
    }
  }
  return dt;
}

void Check::dtype_in(const DLTensor* t, const char* name, std::initializer_list<DType> allowed) const {
  DType dt = dtype_of(t->dtype);
  for (DType a : allowed)
    if (a == dt) return;
  std::ostringstream s;
  bool first = true;
  for (DType a : allowed) {
    s << (first ? "" : ", ") << dtype_name(a);
    first = false;
  }
  fail(DLK_ERROR_DTYPE, name, " has dtype ", dtype_name(dt), ", expected one of ", s.str());
}

void Check::same_dtype(const DLTensor* a, const char* an, const DLTensor* b, const char* bn) const {
  DType da = dtype_of(a->dtype), db = dtype_of(b->dtype);
  if (da != db) fail(DLK_ERROR_DTYPE, bn, " has dtype ", dtype_name(db), ", expected ", dtype_name(da), " like ", an);
}

void Check::same_shape(const DLTensor* a, const char* an, const DLTensor* b, const char* bn) const {
  bool same = a->ndim == b->ndim;
  for (int i = 0; same && i < a->ndim; ++i) same = a->shape[i] == b->shape[i];
  if (!same) fail(DLK_ERROR_SHAPE, bn, " has shape ", shape_string(b), ", expected ", shape_string(a), " like ", an);
}

void Check::shape_is(const DLTensor* t, const char* name, const std::int64_t* shape, int ndim,
                     const char* what) const {
  bool same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; ++i) same = t->shape[i] == shape[i];
  if (!same) {
    std::ostringstream s;
    s << '[';
    for (int i = 0; i < ndim; ++i) s << (i ? "," : "") << shape[i];
    s << ']';
    fail(DLK_ERROR_SHAPE, name, " has shape ", shape_string(t), ", expected ", s.str(), " (", what, ")");
  }
}

void Check::finite(double value, const char* name) const {
  if (!std::isfinite(value)) fail(DLK_ERROR_INVALID_ARGUMENT, name, " is ", value, ", expected a finite number");
}

void Check::params_size(std::size_t given, std::size_t minimum, const char* name) const {
  if (given < minimum)
    fail(DLK_ERROR_INVALID_ARGUMENT, name, "->struct_size is ", given, ", expected at least ", minimum,
         " (initialise it with the matching _params_init function)");
}

void Check::no_partial_overlap(const DLTensor* out, const char* on, const DLTensor* in, const char* in_name) const {
  const char* o = static_cast<const char*>(data_of(out));
  const char* i = static_cast<const char*>(data_of(in));
  if (o == i) return;
  std::size_t ob = static_cast<std::size_t>(numel(out)) * dtype_size(dtype_of(out->dtype));
  std::size_t ib = static_cast<std::size_t>(numel(in)) * dtype_size(dtype_of(in->dtype));
  if (ob == 0 || ib == 0) return;
  if (o < i + ib && i < o + ob)
    fail(DLK_ERROR_LAYOUT, on, " partially overlaps ", in_name, "; outputs may alias an input only exactly");
}

}  // namespace dlk
