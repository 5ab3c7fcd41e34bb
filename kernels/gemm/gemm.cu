// CUDA side of the GEMM family: the products and the linear layer's epilogues.
//
// Products. On cuda every product with k > 0 whose sizes and leading dimensions fit cuBLAS's ints is one
// cublasGemmStridedBatchedEx per outer batch index (the innermost collapsed batch dim is cuBLAS's strided batch,
// stride 0 where an operand is broadcast): fp32 with CUBLAS_COMPUTE_32F (or _FAST_TF32 when allowed), fp16/bf16
// with fp32 accumulation. The row-major product C = A @ B is issued as the column-major C^T = B^T A^T, so no
// operand is copied: a row-major operand is cuBLAS's "N" of its transpose, a column-major one (a transposed view)
// its "T". The handle is the context's (Exec::blas_handle), created on first use and set to the context's stream.
// gemm_tiled_kernel computes the same function: it is what the emulator runs (the emulator cannot run cuBLAS), and on
// cuda it serves what cuBLAS cannot express (k == 0, sizes past int32).
//
// Epilogues (bias + activation, activation gradient, bias gradient) are small memory-bound kernels run after the
// product on both cuda and emu; cuBLASLt's fused epilogues would save one read+write of y on cuda (future work).
#include "runtime/kernel.h"
//
#include <climits>
#include <cmath>
#include <cstdint>

#include "common/convert.cuh"
#include "gemm/gemm.h"

#if defined(__CUDACC__)
#include <cublas_v2.h>
#endif

namespace dlk::DLK_KNS {
namespace {

constexpr int kTile = 32;   // output tile of a block: kTile x kTile
constexpr int kTileK = 16;  // depth of one shared-memory stage
constexpr int kSide = 16;   // threads per block side: 16 x 16 = 256 threads, each 2 x 2 outputs
constexpr std::int64_t kMaxGridYZ = 65535;
constexpr std::int64_t kMaxGridX = 0x7fffffff;
constexpr int kElementwiseThreads = 256;

// Tiled GEMM, the emulated sibling of the cuBLAS path. A block owns a 32 x 32 tile of C for one batch entry (grid
// x over column tiles, y over row tiles, z over batch entries, each loop grid-strided so any size works); its 256
// threads each own a 2 x 2 sub-grid (rows ty and ty + 16, cols tx and tx + 16) accumulated in fp32 registers. Per
// 16-deep stage the block stages a 32 x 16 panel of op(A) and a 16 x 32 panel of op(B) in shared memory (padded
// by one column against bank conflicts), out-of-range entries as zeros, so every tile shape and k work. Traffic:
// op(A) is read n / 32 times and op(B) m / 32 times (from L2 mostly); C is read once when beta != 0 and written once.
// Reads use the general strides, so row- and column-major operands work (column-major ones uncoalesced). Limits:
// none beyond int64 indexing; it is not tuned (cuBLAS is the product path on a GPU).
template <typename T>
__global__ void __launch_bounds__(kSide* kSide) gemm_tiled_kernel(MatmulArgs g) {
  DLK_SHARED_2D(float, as, kTile, kTileK + 1);
  DLK_SHARED_2D(float, bs, kTileK, kTile + 1);
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int tid = ty * kSide + tx;
  const std::int64_t tiles_m = (g.m + kTile - 1) / kTile, tiles_n = (g.n + kTile - 1) / kTile;
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  T* c = static_cast<T*>(g.c);
  for (std::int64_t t = blockIdx.z; t < g.batch; t += gridDim.z) {
    std::int64_t oa, ob, oc;
    matmul_batch_offsets(g, t, &oa, &ob, &oc);
    for (std::int64_t tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
      for (std::int64_t tn = blockIdx.x; tn < tiles_n; tn += gridDim.x) {
        const std::int64_t row0 = tm * kTile, col0 = tn * kTile;
        float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
        for (std::int64_t p0 = 0; p0 < g.k; p0 += kTileK) {
          for (int e = tid; e < kTile * kTileK; e += kSide * kSide) {
            const int r = e / kTileK, q = e % kTileK;  // A panel: consecutive threads walk along k
            const std::int64_t i = row0 + r, p = p0 + q;
            as[r][q] = i < g.m && p < g.k ? to_float(a[oa + i * g.a_rs + p * g.a_cs]) : 0.0f;
          }
          for (int e = tid; e < kTileK * kTile; e += kSide * kSide) {
            const int r = e / kTile, q = e % kTile;  // B panel: consecutive threads walk along n
            const std::int64_t p = p0 + r, j = col0 + q;
            bs[r][q] = p < g.k && j < g.n ? to_float(b[ob + p * g.b_rs + j * g.b_cs]) : 0.0f;
          }
          __syncthreads();
#pragma unroll
          for (int q = 0; q < kTileK; ++q) {
            const float a0 = as[ty][q], a1 = as[ty + kSide][q];
            const float b0 = bs[q][tx], b1 = bs[q][tx + kSide];
            acc[0][0] += a0 * b0;
            acc[0][1] += a0 * b1;
            acc[1][0] += a1 * b0;
            acc[1][1] += a1 * b1;
          }
          __syncthreads();
        }
#pragma unroll
        for (int u = 0; u < 2; ++u) {
#pragma unroll
          for (int v = 0; v < 2; ++v) {
            const std::int64_t i = row0 + ty + u * kSide, j = col0 + tx + v * kSide;
            if (i < g.m && j < g.n) {
              T* out = c + oc + i * g.c_rs + j;
              float r = g.alpha * acc[u][v];
              if (g.beta != 0.0f) r += g.beta * to_float(*out);
              *out = from_float<T>(r);
            }
          }
        }
      }
    }
  }
}

void matmul_tiled(const MatmulArgs& g, const Exec& exec) {
  const std::int64_t tiles_m = (g.m + kTile - 1) / kTile, tiles_n = (g.n + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(tiles_n < kMaxGridX ? tiles_n : kMaxGridX),
                  static_cast<unsigned>(tiles_m < kMaxGridYZ ? tiles_m : kMaxGridYZ),
                  static_cast<unsigned>(g.batch < kMaxGridYZ ? g.batch : kMaxGridYZ));
  with_float_type(g.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("gemm_tiled_kernel", gemm_tiled_kernel<T>, grid, dim3(kSide, kSide), 0, exec, g);
  });
}

// Elementwise grids: one thread per element, grid-strided, at most 64K blocks.
dim3 elementwise_grid(std::int64_t n) {
  std::int64_t blocks = (n + kElementwiseThreads - 1) / kElementwiseThreads;
  return dim3(static_cast<unsigned>(blocks < kMaxGridYZ ? blocks : kMaxGridYZ));
}

// y = act(round(y + bias[j])), z = round(y + bias[j]) saved when asked. One thread per element of y [rows, cols],
// grid-strided; reads y (and bias, from cache), writes y (and z). Memory bound.
template <typename T>
__global__ void linear_epilogue_kernel(T* y, const T* bias, T* z, std::int64_t rows, std::int64_t cols,
                                       dlk_epilogue act) {
  const std::int64_t n = rows * cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float v = to_float(y[i]);
    if (bias) v += to_float(bias[i % cols]);
    const T zv = from_float<T>(v);
    if (z) z[i] = zv;
    y[i] = from_float<T>(epilogue_forward(act, to_float(zv)));
  }
}

// g = dy * act'(z), one thread per element, grid-strided; g may alias dy. Memory bound.
template <typename T>
__global__ void linear_act_grad_kernel(const T* dy, const T* z, T* g, std::int64_t n, dlk_epilogue act) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    g[i] = from_float<T>(to_float(dy[i]) * epilogue_derivative(act, to_float(z[i])));
}

constexpr int kBiasCols = 32;  // columns per block of bias_grad_kernel (one warp wide)
constexpr int kBiasRows = 8;   // row lanes per block

// db[j] (+)= sum_r g[r, j]. A block owns 32 columns (grid-strided over column groups); its 8 warps each sum every
// 8th row of those columns in fp32 (a warp reads 32 consecutive elements: coalesced), then warp 0 adds the 8
// partial sums in a fixed order: no atomics, bitwise deterministic. Traffic: g read once, db written once.
template <typename T>
__global__ void __launch_bounds__(kBiasCols* kBiasRows)
    bias_grad_kernel(const T* g, T* db, std::int64_t rows, std::int64_t cols, bool accumulate) {
  DLK_SHARED_2D(float, part, kBiasRows, kBiasCols);
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  for (std::int64_t c0 = blockIdx.x * static_cast<std::int64_t>(kBiasCols); c0 < cols;
       c0 += static_cast<std::int64_t>(gridDim.x) * kBiasCols) {
    const std::int64_t j = c0 + tx;
    float s = 0.0f;
    if (j < cols)
      for (std::int64_t r = ty; r < rows; r += kBiasRows) s += to_float(g[r * cols + j]);
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && j < cols) {
      float total = accumulate ? to_float(db[j]) : 0.0f;
      float sum = 0.0f;
      for (int k = 0; k < kBiasRows; ++k) sum += part[k][tx];
      db[j] = from_float<T>(total + sum);
    }
    __syncthreads();
  }
}

#if defined(__CUDACC__)
const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    default: return "cuBLAS error";
  }
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_ALLOC_FAILED) fail(DLK_ERROR_OUT_OF_MEMORY, "matmul: ", what, ": ", cublas_status_name(s));
  if (s != CUBLAS_STATUS_SUCCESS) fail(DLK_ERROR_DEVICE_FAILURE, "matmul: ", what, " failed: ", cublas_status_name(s));
}

void destroy_cublas(void* h) { cublasDestroy(static_cast<cublasHandle_t>(h)); }

// The context's handle, created on first use, bound to the context's stream.
cublasHandle_t cublas_handle(const Exec& exec) {
  if (!exec.blas_handle || !exec.blas_handle_destroy)
    fail(DLK_ERROR_INTERNAL, "matmul: the context has no slot for a cuBLAS handle");
  if (!*exec.blas_handle) {
    cublasHandle_t h = nullptr;
    check_cublas(cublasCreate(&h), "cublasCreate");
    *exec.blas_handle = h;
    *exec.blas_handle_destroy = destroy_cublas;
  }
  cublasHandle_t h = static_cast<cublasHandle_t>(*exec.blas_handle);
  check_cublas(cublasSetStream(h, static_cast<cudaStream_t>(exec.stream)), "cublasSetStream");
  return h;
}

bool fits_int(std::int64_t v) { return v >= 0 && v <= INT_MAX; }

// Whether cuBLAS can run the product: int sizes and leading dimensions, k > 0.
bool cublas_fits(const MatmulArgs& g) {
  if (g.k == 0) return false;
  const std::int64_t inner = g.batch_ndim ? g.batch_sizes[g.batch_ndim - 1] : 1;
  return fits_int(g.m) && fits_int(g.n) && fits_int(g.k) && fits_int(g.a_rs) && fits_int(g.a_cs) && fits_int(g.b_rs) &&
         fits_int(g.b_cs) && fits_int(g.c_rs) && fits_int(inner);
}

void matmul_cublas(const MatmulArgs& g, const Exec& exec) {
  cublasHandle_t h = cublas_handle(exec);
  cudaDataType_t type = g.dtype == DType::F32 ? CUDA_R_32F : g.dtype == DType::F16 ? CUDA_R_16F : CUDA_R_16BF;
  cublasComputeType_t compute =
      g.dtype == DType::F32 && g.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  // Column-major C^T [n, m] = op(B)^T [n, k] * op(A)^T [k, m].
  const bool b_row = g.b_cs == 1, a_row = g.a_cs == 1;
  const cublasOperation_t opb = b_row ? CUBLAS_OP_N : CUBLAS_OP_T, opa = a_row ? CUBLAS_OP_N : CUBLAS_OP_T;
  const int ldb = static_cast<int>(b_row ? g.b_rs : g.b_cs), lda = static_cast<int>(a_row ? g.a_rs : g.a_cs);
  const int last = g.batch_ndim - 1;
  const std::int64_t inner = g.batch_ndim ? g.batch_sizes[last] : 1;
  const long long sa = g.batch_ndim ? g.a_bs[last] : 0, sb = g.batch_ndim ? g.b_bs[last] : 0,
                  sc = g.batch_ndim ? g.c_bs[last] : 0;
  const std::size_t es = dtype_size(g.dtype);
  for (std::int64_t outer = 0; outer < g.batch / inner; ++outer) {
    std::int64_t oa, ob, oc;
    matmul_batch_offsets(g, outer * inner, &oa, &ob, &oc);
    check_cublas(cublasGemmStridedBatchedEx(h, opb, opa, static_cast<int>(g.n), static_cast<int>(g.m),
                                            static_cast<int>(g.k), &g.alpha, static_cast<const char*>(g.b) + ob * es,
                                            type, ldb, sb, static_cast<const char*>(g.a) + oa * es, type, lda, sa,
                                            &g.beta, static_cast<char*>(g.c) + oc * es, type, static_cast<int>(g.c_rs),
                                            sc, static_cast<int>(inner), compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmStridedBatchedEx");
  }
}
#endif

}  // namespace

void matmul(const MatmulArgs& g, const Exec& exec) {
#if defined(__CUDACC__)
  if (cublas_fits(g)) return matmul_cublas(g, exec);
#endif
  matmul_tiled(g, exec);
}

void linear_epilogue(const LinearEpilogueArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("linear_epilogue_kernel", linear_epilogue_kernel<T>, elementwise_grid(a.rows * a.cols),
           dim3(kElementwiseThreads), 0, exec, static_cast<T*>(a.y), static_cast<const T*>(a.bias),
           static_cast<T*>(a.z), a.rows, a.cols, a.act);
  });
}

void linear_act_grad(const LinearActGradArgs& a, const Exec& exec) {
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("linear_act_grad_kernel", linear_act_grad_kernel<T>, elementwise_grid(a.n), dim3(kElementwiseThreads), 0,
           exec, static_cast<const T*>(a.dy), static_cast<const T*>(a.z), static_cast<T*>(a.g), a.n, a.act);
  });
}

void bias_grad(const BiasGradArgs& a, const Exec& exec) {
  const std::int64_t groups = (a.cols + kBiasCols - 1) / kBiasCols;
  const dim3 grid(static_cast<unsigned>(groups < kMaxGridYZ ? groups : kMaxGridYZ));
  with_float_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("bias_grad_kernel", bias_grad_kernel<T>, grid, dim3(kBiasCols, kBiasRows), 0, exec,
           static_cast<const T*>(a.g), static_cast<T*>(a.db), a.rows, a.cols, a.accumulate);
  });
}

}  // namespace dlk::DLK_KNS
