// CPU reference of embedding forward / backward / sparse update, and the fallback without a GPU.
//
// Forward copies rows (bytes, any dtype). Backward groups the indices by table row with a counting sort (CSR: a
// count per row, a prefix sum, then the positions i of each row in ascending order), then each row sums its dout rows
// in fp64 in ascending i and stores once: no races, deterministic in every mode, parallel over table rows.
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/host.h"
#include "embedding/embedding.h"

namespace dlk::cpu {
namespace {

// Below this much work a call runs on one thread.
constexpr std::int64_t kMinWork = 65536;

inline std::int64_t index_at(const void* idx, DType t, std::int64_t i) {
  return t == DType::I64 ? static_cast<const std::int64_t*>(idx)[i] : static_cast<const std::int32_t*>(idx)[i];
}

template <typename T>
void backward_rows(const EmbeddingBackwardArgs& a, const Exec& exec) {
  const T* dout = static_cast<const T*>(a.dout);
  T* dw = static_cast<T*>(a.dweight);
  const std::int64_t V = a.rows, D = a.dim, n = a.n;
  // CSR of the indices by row: start[r] .. start[r+1] in `order` are the i with idx[i] == r, ascending.
  std::vector<std::int64_t> start(static_cast<std::size_t>(V) + 1, 0), order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = index_at(a.indices, a.index_dtype, i);
    if (r >= 0 && r < V) ++start[static_cast<std::size_t>(r) + 1];
  }
  for (std::int64_t r = 0; r < V; ++r) start[r + 1] += start[r];
  std::vector<std::int64_t> cursor(start.begin(), start.end() - 1);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = index_at(a.indices, a.index_dtype, i);
    if (r >= 0 && r < V) order[static_cast<std::size_t>(cursor[r]++)] = i;
  }
  const double factor = a.factor;
#pragma omp parallel num_threads(host::threads(exec, V * D + n * D, host::kUncapped, kMinWork))
  {
    std::vector<double> acc(static_cast<std::size_t>(D));
#pragma omp for schedule(dynamic, 64)
    for (std::int64_t r = 0; r < V; ++r) {
      T* row = dw + r * D;
      const std::int64_t b = start[r], e = start[r + 1];
      if (r == a.padding_row || b == e) {  // no gradient: zero it, or leave it when accumulating
        if (!a.accumulate)
          for (std::int64_t d = 0; d < D; ++d) host::store(row, d, 0.0f);
        continue;
      }
      for (std::int64_t d = 0; d < D; ++d) acc[d] = 0.0;
      for (std::int64_t k = b; k < e; ++k) {
        const T* g = dout + order[k] * D;
        for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(host::load(g, d));
      }
      for (std::int64_t d = 0; d < D; ++d) {
        const double base = a.accumulate ? static_cast<double>(host::load(row, d)) : 0.0;
        host::store(row, d, static_cast<float>(base + factor * acc[d]));
      }
    }
  }
}

}  // namespace

void embedding_forward(const EmbeddingForwardArgs& a, const Exec& exec) {
  const std::size_t es = dtype_size(a.dtype);
  const std::size_t row_bytes = es * static_cast<std::size_t>(a.dim);
  const unsigned char* w = static_cast<const unsigned char*>(a.weight);
  unsigned char* out = static_cast<unsigned char*>(a.out);
#pragma omp parallel for num_threads(host::threads(exec, a.n * a.dim, host::kUncapped, kMinWork)) schedule(static)
  for (std::int64_t i = 0; i < a.n; ++i) {
    const std::int64_t r = index_at(a.indices, a.index_dtype, i);
    unsigned char* dst = out + static_cast<std::size_t>(i) * row_bytes;
    if (r >= 0 && r < a.rows)
      std::memcpy(dst, w + static_cast<std::size_t>(r) * row_bytes, row_bytes);
    else
      std::memset(dst, 0, row_bytes);  // unreachable: capi rejects such indices on cpu
  }
}

void embedding_backward(const EmbeddingBackwardArgs& a, const Exec& exec) {
  host::with_type(a.dtype, "embedding_backward", [&](auto tag) { backward_rows<decltype(tag)>(a, exec); });
}

}  // namespace dlk::cpu
