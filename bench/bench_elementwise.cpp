// The elementwise family through the public C API: activations forward/backward, broadcast add (same shape and a
// bias row), mul, sum_to_shape (the bias gradient), residual add, and concat/split at U-Net skip-connection shapes.
// All memory bound on the GPU, so each case reports GB/s (and on cuda pct_copy_bw, the fraction of the measured
// copy bandwidth). On the CPU the transcendental activations are compute bound (scalar libm).
//
// Bytes that must move: every input read once, every output written once — activation forward 2n elements,
// backward 3n (saved tensor, dy, dx), add/mul 3n (or 2n + the broadcast row), sum_to_shape n + the output, residual
// add 3n (y read and written, x read), concat/split 2x the joined tensor. Keep the keys and shapes in step with
// bench/compare_torch.py (section "elementwise"), which times PyTorch on the same keys.
#include <functional>
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using dlkb::Dtype;
using dlkb::Env;
using dlkb::Tensor;
using Shape = std::vector<int64_t>;

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_key(const Shape& s) {
  std::string k;
  for (int64_t d : s) k += (k.empty() ? "" : "x") + std::to_string(d);
  return k;
}

// One operand of a case: its shape, and whether it is an input (filled) or an output.
struct Operand {
  Shape shape;
  bool input;
};

// Runs `call(tensors of set k)` with `sets` rotated buffer sets of the operands.
void run(benchmark::State& state, Dtype dt, const std::vector<Operand>& ops, double bytes,
         const std::function<dlk_status(std::vector<Tensor>&)>& call) {
  Env& e = dlkb::env();
  if (!e.error.empty()) return state.SkipWithError(e.error.c_str());
  double set_bytes = 0;
  for (const Operand& o : ops) set_bytes += static_cast<double>(numel(o.shape) * dlkb::dtype_size(dt));
  const int sets = dlkb::rotation_sets(e, static_cast<std::size_t>(set_bytes));
  std::vector<std::vector<Tensor>> buf(static_cast<std::size_t>(sets));
  for (int k = 0; k < sets; ++k)
    for (std::size_t j = 0; j < ops.size(); ++j) {
      buf[k].emplace_back(e, ops[j].shape, dlkb::dl_dtype(dt));
      if (!buf[k].back().ok() || (ops[j].input && !dlkb::fill(e, buf[k].back(), dt, static_cast<uint64_t>(k * 16 + j))))
        return state.SkipWithError("cannot allocate or fill the buffers");
    }
  dlkb::run_case(state, e, bytes,
                 [&](long i) { return dlkb::dlk_result(call(buf[static_cast<std::size_t>(i % sets)])); });
}

const char* act_name(dlk_activation_kind k) {
  switch (k) {
    case DLK_ACTIVATION_RELU: return "relu";
    case DLK_ACTIVATION_LEAKY_RELU: return "leaky_relu";
    case DLK_ACTIVATION_ELU: return "elu";
    case DLK_ACTIVATION_GELU: return "gelu";
    case DLK_ACTIVATION_GELU_TANH: return "gelu_tanh";
    case DLK_ACTIVATION_TANH: return "tanh";
    case DLK_ACTIVATION_SIGMOID: return "sigmoid";
    default: return "silu";
  }
}

void register_cases(Env& e) {
  // 16M elements on the GPU (64 MB of fp32 per operand, past the L2); 4M on the CPU to keep the suite short.
  const int64_t n = e.cuda ? (int64_t{1} << 24) : (int64_t{1} << 22);
  const std::vector<Dtype> dtypes =
      e.cuda ? std::vector<Dtype>{Dtype::F32, Dtype::F16, Dtype::BF16} : std::vector<Dtype>{Dtype::F32};
  const Shape flat = {n};
  const Shape rows = {n / 1024, 1024}, row = {1024};
  // U-Net decoder skip connection: [B, C, H, W] + [B, C, H, W] along channels.
  const Shape skip = e.cuda ? Shape{16, 64, 128, 128} : Shape{4, 64, 64, 64};
  Shape joined = skip;
  joined[1] *= 2;
  for (Dtype dt : dtypes) {
    const double es = static_cast<double>(dlkb::dtype_size(dt));
    const std::string d = dlkb::dtype_name(dt);
    for (dlk_activation_kind k :
         {DLK_ACTIVATION_RELU, DLK_ACTIVATION_LEAKY_RELU, DLK_ACTIVATION_ELU, DLK_ACTIVATION_GELU,
          DLK_ACTIVATION_GELU_TANH, DLK_ACTIVATION_TANH, DLK_ACTIVATION_SIGMOID, DLK_ACTIVATION_SILU}) {
      const std::string base = std::string("elementwise/") + act_name(k);
      dlkb::add(base + "/fwd/" + d + "/N" + std::to_string(n), "dlk", [=](benchmark::State& st) {
        run(st, dt, {{flat, true}, {flat, false}}, 2 * es * n, [k](std::vector<Tensor>& t) {
          dlk_activation_params p;
          dlk_activation_params_init(&p);
          p.kind = k;
          return dlk_activation_forward(dlkb::env().ctx, &p, t[0].dl(), t[1].dl());
        });
      });
      dlkb::add(base + "/bwd/" + d + "/N" + std::to_string(n), "dlk", [=](benchmark::State& st) {
        run(st, dt, {{flat, true}, {flat, true}, {flat, false}}, 3 * es * n, [k](std::vector<Tensor>& t) {
          dlk_activation_params p;
          dlk_activation_params_init(&p);
          p.kind = k;
          // From the saved output where PyTorch's autograd saves it (tanh, sigmoid), else from the input.
          const bool from_y = k == DLK_ACTIVATION_TANH || k == DLK_ACTIVATION_SIGMOID;
          return dlk_activation_backward(dlkb::env().ctx, &p, from_y ? nullptr : t[0].dl(), from_y ? t[0].dl() : nullptr,
                                         t[1].dl(), t[2].dl());
        });
      });
    }
    dlkb::add("elementwise/add/same/" + d + "/N" + std::to_string(n), "dlk", [=](benchmark::State& st) {
      run(st, dt, {{flat, true}, {flat, true}, {flat, false}}, 3 * es * n, [](std::vector<Tensor>& t) {
        return dlk_add_forward(dlkb::env().ctx, t[0].dl(), t[1].dl(), 1.0f, t[2].dl());
      });
    });
    dlkb::add("elementwise/add/bias/" + d + "/" + shape_key(rows), "dlk", [=](benchmark::State& st) {
      run(st, dt, {{rows, true}, {row, true}, {rows, false}}, es * (2.0 * n + 1024), [](std::vector<Tensor>& t) {
        return dlk_add_forward(dlkb::env().ctx, t[0].dl(), t[1].dl(), 1.0f, t[2].dl());
      });
    });
    dlkb::add("elementwise/mul/same/" + d + "/N" + std::to_string(n), "dlk", [=](benchmark::State& st) {
      run(st, dt, {{flat, true}, {flat, true}, {flat, false}}, 3 * es * n,
          [](std::vector<Tensor>& t) { return dlk_mul_forward(dlkb::env().ctx, t[0].dl(), t[1].dl(), t[2].dl()); });
    });
    dlkb::add("elementwise/residual_add/" + d + "/N" + std::to_string(n), "dlk", [=](benchmark::State& st) {
      run(st, dt, {{flat, true}, {flat, true}}, 3 * es * n,
          [](std::vector<Tensor>& t) { return dlk_residual_add(dlkb::env().ctx, t[0].dl(), 1.0f, t[1].dl()); });
    });
    dlkb::add("elementwise/sum_to_shape/" + d + "/" + shape_key(rows) + "_to_1024", "dlk", [=](benchmark::State& st) {
      run(st, dt, {{rows, true}, {row, false}}, es * (n + 1024.0),
          [](std::vector<Tensor>& t) { return dlk_sum_to_shape(dlkb::env().ctx, t[0].dl(), 1.0f, t[1].dl()); });
    });
    dlkb::add("elementwise/cat/" + d + "/" + shape_key(skip) + "x2_dim1", "dlk", [=](benchmark::State& st) {
      run(st, dt, {{skip, true}, {skip, true}, {joined, false}}, 2 * es * numel(joined), [](std::vector<Tensor>& t) {
        const DLTensor* in[2] = {t[0].dl(), t[1].dl()};
        return dlk_concat(dlkb::env().ctx, in, 2, 1, t[2].dl());
      });
    });
    dlkb::add("elementwise/split/" + d + "/" + shape_key(skip) + "x2_dim1", "dlk", [=](benchmark::State& st) {
      run(st, dt, {{joined, true}, {skip, false}, {skip, false}}, 2 * es * numel(joined), [](std::vector<Tensor>& t) {
        DLTensor* out[2] = {t[1].dl(), t[2].dl()};
        return dlk_split(dlkb::env().ctx, t[0].dl(), 1, out, 2);
      });
    });
  }
}

}  // namespace

int main(int argc, char** argv) { return dlkb::run_main(argc, argv, register_cases); }
