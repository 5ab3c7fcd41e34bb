// The GPT itself: parameters, forward, explicit backward and the optimizer step, each layer one or two dlk_* calls.
//
// Shapes (N = B*T rows, C = n_embd, H = n_head, D = C/H, V = vocab):
//   x0 = dropout(wte[idx] + wpe[:T])                                       [N, C]
//   block l:  h1 = ln1(x_l);  qkv = h1 Wqkv^T + b  [N, 3C]
//             att = attention(q, k, v) causal, q/k/v read straight out of qkv as [B, H, T, D] strided views
//             (row stride 3C, head stride D, offsets 0 / C / 2C) and att written as a [B, H, T, D] view of [N, C]
//             xm_l = x_l + dropout(att Wproj^T + b)
//             h2 = ln2(xm_l);  f = gelu(h2 Wfc^T + b) [N, 4C];  x_{l+1} = xm_l + dropout(f Wp2^T + b)
//   logits = ln_f(x_L) wte^T [N, V]; loss = mean cross-entropy (the fused kernel writes dlogits over the logits).
//
// Memory: every activation the backward reads is kept per layer (x_l, h1, qkv, att, lse, xm_l, h2, the GELU's
// pre-activation and output), about 16 N C floats per layer; dropout masks are not stored but regenerated from their
// Philox (seed, offset). Parameter gradients accumulate (+=) into one zeroed flat buffer, so the tied wte collects
// both the LM head's and the embedding's gradient without a temporary.
//
// Parameter layout: one flat float buffer, the weight-decay group first (the four linear weights of every block),
// then the no-decay group (wte, wpe, biases, layer-norm gains and shifts) — minGPT's / the original nanoGPT's groups,
// where the tied wte/lm_head is not decayed. AdamW then takes the two regions as two tensors in one call.
#include <cmath>
#include <cstring>

#include "gpt.h"

namespace gpt {
namespace {

void check(dlk_status status, const char* what) {
  if (status != DLK_SUCCESS)
    throw Error(std::string(what) + ": " + dlk_status_string(status) + ": " + dlk_last_error());
}

// A DLTensor with its own shape and strides storage. Pass as `T(x)` to a dlk_* call.
struct View {
  void* data = nullptr;
  DLDevice device{kDLCPU, 0};
  DLDataType dtype{kDLFloat, 32, 1};
  int ndim = 0;
  std::int64_t shape[6] = {};
  std::int64_t strides[6] = {};
  bool strided = false;
};

struct T {
  DLTensor t;
  explicit T(const View& v) {
    t.data = v.data;
    t.device = v.device;
    t.ndim = v.ndim;
    t.dtype = v.dtype;
    t.shape = const_cast<std::int64_t*>(v.shape);
    t.strides = v.strided ? const_cast<std::int64_t*>(v.strides) : nullptr;
    t.byte_offset = 0;
  }
  operator DLTensor*() { return &t; }
  operator const DLTensor*() const { return &t; }
};

}  // namespace

struct Model::Impl {
  dlk_context* ctx = nullptr;
  DLDevice dev{kDLCPU, 0};
  std::vector<void*> allocations;
  int max_b = 0, max_t = 0;

  float* param = nullptr;  // flat buffers of num_params floats
  float* grad = nullptr;
  float* adam_m = nullptr;
  float* adam_v = nullptr;
  std::size_t decay_numel = 0;

  // activations, sized for max_b * max_t rows
  std::int32_t* idx = nullptr;
  std::int32_t* tgt = nullptr;
  struct Layer {
    float *x, *h1, *ln1_mean, *ln1_rstd, *qkv, *att, *lse, *xm, *h2, *ln2_mean, *ln2_rstd, *fc_z, *fc_a;
    std::uint64_t off_attn = 0, off_res1 = 0, off_res2 = 0;  // dropout offsets of the last training forward
  };
  std::vector<Layer> layers;
  float *x_final = nullptr, *hf = nullptr, *lnf_mean = nullptr, *lnf_rstd = nullptr, *logits = nullptr;
  float *tmp = nullptr, *tmp2 = nullptr, *dres = nullptr, *dbig = nullptr, *dqkv = nullptr, *datt = nullptr;
  float* loss = nullptr;
  std::uint64_t off_emb = 0;

  // Last forward's shape and mode.
  int b = 0, t = 0;
  bool trained_forward = false;

  template <typename E>
  E* alloc(std::size_t count) {
    void* p = nullptr;
    check(dlk_alloc(ctx, count * sizeof(E), &p), "dlk_alloc");
    allocations.push_back(p);
    return static_cast<E*>(p);
  }

  View view(void* data, std::initializer_list<std::int64_t> shape) const {
    View v;
    v.data = data;
    v.device = dev;
    v.ndim = static_cast<int>(shape.size());
    int i = 0;
    for (auto s : shape) v.shape[i++] = s;
    return v;
  }
  View iview(std::int32_t* data, std::initializer_list<std::int64_t> shape) const {
    View v = view(data, shape);
    v.dtype = DLDataType{kDLInt, 32, 1};
    return v;
  }
  // [B, H, T, D] view of head-interleaved rows of width `row` floats starting at column `col0`.
  View heads(float* base, std::int64_t col0, std::int64_t row, int B, int H, int Tn, int D) const {
    View v = view(base + col0, {B, H, Tn, D});
    v.strided = true;
    v.strides[0] = static_cast<std::int64_t>(Tn) * row;
    v.strides[1] = D;
    v.strides[2] = row;
    v.strides[3] = 1;
    return v;
  }
};

namespace {

// Parameter names, in layout order.
struct ParamSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  bool decay;
};

}  // namespace

Model::Model(dlk_context* context, const Config& config, int vocab_size, int max_batch, int max_t)
    : impl_(std::make_unique<Impl>()), config_(config), vocab_(vocab_size) {
  std::string err;
  if (!config_validate(config, &err)) throw Error(err);
  if (max_t > config.block_size || max_t < 1 || max_batch < 1 || vocab_size < 1)
    throw Error("gpt: bad model allocation sizes");
  Impl& m = *impl_;
  m.ctx = context;
  dlk_device d = DLK_DEVICE_CPU;
  check(dlk_context_device(context, &d), "dlk_context_device");
  m.dev = d == DLK_DEVICE_CUDA ? DLDevice{kDLCUDA, 0} : DLDevice{kDLCPU, 0};
  m.max_b = max_batch;
  m.max_t = max_t;

  const std::int64_t C = config.n_embd, L = config.n_layer, V = vocab_size, Bk = config.block_size;
  std::vector<ParamSpec> specs;
  for (int l = 0; l < L; ++l) {
    std::string p = "h" + std::to_string(l) + ".";
    specs.push_back({p + "attn.c_attn.weight", {3 * C, C}, true});
    specs.push_back({p + "attn.c_proj.weight", {C, C}, true});
    specs.push_back({p + "mlp.c_fc.weight", {4 * C, C}, true});
    specs.push_back({p + "mlp.c_proj.weight", {C, 4 * C}, true});
  }
  specs.push_back({"wte.weight", {V, C}, false});
  specs.push_back({"wpe.weight", {Bk, C}, false});
  for (int l = 0; l < L; ++l) {
    std::string p = "h" + std::to_string(l) + ".";
    specs.push_back({p + "ln_1.weight", {C}, false});
    specs.push_back({p + "ln_1.bias", {C}, false});
    specs.push_back({p + "attn.c_attn.bias", {3 * C}, false});
    specs.push_back({p + "attn.c_proj.bias", {C}, false});
    specs.push_back({p + "ln_2.weight", {C}, false});
    specs.push_back({p + "ln_2.bias", {C}, false});
    specs.push_back({p + "mlp.c_fc.bias", {4 * C}, false});
    specs.push_back({p + "mlp.c_proj.bias", {C}, false});
  }
  specs.push_back({"ln_f.weight", {C}, false});
  specs.push_back({"ln_f.bias", {C}, false});
  std::size_t off = 0;
  for (auto& s : specs) {
    ParamInfo info;
    info.name = s.name;
    info.shape = s.shape;
    info.numel = 1;
    for (auto x : s.shape) info.numel *= static_cast<std::size_t>(x);
    info.offset = off;
    info.decay = s.decay;
    off += info.numel;
    if (s.decay) m.decay_numel = off;
    params_.push_back(info);
  }
  num_params_ = off;
  m.param = m.alloc<float>(num_params_);
  m.grad = m.alloc<float>(num_params_);
  m.adam_m = m.alloc<float>(num_params_);
  m.adam_v = m.alloc<float>(num_params_);

  const std::size_t N = static_cast<std::size_t>(max_batch) * static_cast<std::size_t>(max_t);
  const std::size_t H = static_cast<std::size_t>(config.n_head);
  const std::size_t Cs = static_cast<std::size_t>(C);
  m.idx = m.alloc<std::int32_t>(N);
  m.tgt = m.alloc<std::int32_t>(N);
  m.layers.resize(static_cast<std::size_t>(L));
  for (auto& ly : m.layers) {
    ly.x = m.alloc<float>(N * Cs);
    ly.h1 = m.alloc<float>(N * Cs);
    ly.ln1_mean = m.alloc<float>(N);
    ly.ln1_rstd = m.alloc<float>(N);
    ly.qkv = m.alloc<float>(3 * N * Cs);
    ly.att = m.alloc<float>(N * Cs);
    ly.lse = m.alloc<float>(N * H);
    ly.xm = m.alloc<float>(N * Cs);
    ly.h2 = m.alloc<float>(N * Cs);
    ly.ln2_mean = m.alloc<float>(N);
    ly.ln2_rstd = m.alloc<float>(N);
    ly.fc_z = m.alloc<float>(4 * N * Cs);
    ly.fc_a = m.alloc<float>(4 * N * Cs);
  }
  m.x_final = m.alloc<float>(N * Cs);
  m.hf = m.alloc<float>(N * Cs);
  m.lnf_mean = m.alloc<float>(N);
  m.lnf_rstd = m.alloc<float>(N);
  m.logits = m.alloc<float>(N * static_cast<std::size_t>(V));
  m.tmp = m.alloc<float>(N * Cs);
  m.tmp2 = m.alloc<float>(N * Cs);
  m.dres = m.alloc<float>(N * Cs);
  m.datt = m.alloc<float>(N * Cs);
  m.dbig = m.alloc<float>(4 * N * Cs);
  m.dqkv = m.alloc<float>(3 * N * Cs);
  m.loss = m.alloc<float>(1);
}

Model::~Model() {
  for (void* p : impl_->allocations) dlk_free(impl_->ctx, p);
}

void Model::init(std::uint64_t seed) {
  Impl& m = *impl_;
  const double residual_std = 0.02 / std::sqrt(2.0 * config_.n_layer);
  std::uint64_t offset = 0;
  for (const auto& p : params_) {
    dlk_init_params ip;
    check(dlk_init_params_init(&ip), "dlk_init_params_init");
    ip.seed = seed;
    ip.offset = offset;
    const bool is_weight = p.name.size() > 7 && p.name.compare(p.name.size() - 7, 7, ".weight") == 0;
    const bool is_ln = p.name.find("ln_") != std::string::npos;
    if (is_weight && !is_ln) {
      ip.kind = DLK_INIT_NORMAL;
      ip.std = p.name.find("c_proj.weight") != std::string::npos ? residual_std : 0.02;
    } else {
      ip.kind = DLK_INIT_CONSTANT;
      ip.a = is_ln && is_weight ? 1.0 : 0.0;
    }
    View v = m.view(m.param + p.offset, {static_cast<std::int64_t>(p.numel)});
    check(dlk_init(m.ctx, &ip, T(v)), "dlk_init");
    offset += p.numel + (p.numel & 1);  // Box-Muller uses positions in pairs: keep tensors on disjoint pairs
  }
  View all_m = m.view(m.adam_m, {static_cast<std::int64_t>(num_params_)});
  View all_v = m.view(m.adam_v, {static_cast<std::int64_t>(num_params_)});
  View all_g = m.view(m.grad, {static_cast<std::int64_t>(num_params_)});
  T tm(all_m), tv(all_v), tg(all_g);
  DLTensor* zero[] = {tm, tv, tg};
  check(dlk_zero_grad(m.ctx, 3, zero), "dlk_zero_grad");
  adam_step = 0;
  dropout_offset = 0;
  dropout_seed = seed ^ 0x5DEECE66DULL;
}

float Model::forward(const std::int32_t* idx, const std::int32_t* targets, int B, int Tn, bool training) {
  Impl& m = *impl_;
  if (B < 1 || B > m.max_b || Tn < 1 || Tn > m.max_t) throw Error("gpt: forward batch shape exceeds the allocation");
  const std::int64_t C = config_.n_embd, H = config_.n_head, D = C / H, V = vocab_;
  const std::int64_t N = static_cast<std::int64_t>(B) * Tn;
  const DLDevice host{kDLCPU, 0};
  m.b = B;
  m.t = Tn;
  m.trained_forward = false;
  check(dlk_copy(m.ctx, m.idx, m.dev, idx, host, static_cast<std::size_t>(N) * 4), "dlk_copy idx");
  if (targets) check(dlk_copy(m.ctx, m.tgt, m.dev, targets, host, static_cast<std::size_t>(N) * 4), "dlk_copy tgt");
  const bool drop = training && config_.dropout > 0;
  auto P = [&](std::size_t i) { return m.param + params_[i].offset; };
  const std::size_t L = m.layers.size();
  // indices of the parameters in params_ (layout order of the constructor)
  auto w_attn = [&](std::size_t l) { return 4 * l + 0; };
  auto w_proj = [&](std::size_t l) { return 4 * l + 1; };
  auto w_fc = [&](std::size_t l) { return 4 * l + 2; };
  auto w_p2 = [&](std::size_t l) { return 4 * l + 3; };
  const std::size_t i_wte = 4 * L, i_wpe = 4 * L + 1;
  auto nd = [&](std::size_t l, std::size_t k) { return 4 * L + 2 + 8 * l + k; };  // ln1w ln1b ab pb ln2w ln2b fb p2b
  const std::size_t i_lnfw = 4 * L + 2 + 8 * L, i_lnfb = i_lnfw + 1;

  dlk_dropout_params dp;
  check(dlk_dropout_params_init(&dp), "dlk_dropout_params_init");
  dp.p = static_cast<float>(config_.dropout);
  dp.seed = dropout_seed;
  auto dropout_inplace = [&](float* data, std::int64_t numel, std::uint64_t* off_out) {
    dp.offset = dropout_offset;
    *off_out = dropout_offset;
    dropout_offset += static_cast<std::uint64_t>(numel);
    View v = m.view(data, {numel});
    check(dlk_dropout_forward(m.ctx, &dp, T(v), T(v), nullptr), "dlk_dropout_forward");
  };

  // embeddings
  {
    dlk_embedding_params ep;
    check(dlk_embedding_params_init(&ep), "dlk_embedding_params_init");
    check(dlk_embedding_forward(m.ctx, &ep, T(m.iview(m.idx, {B, Tn})), T(m.view(P(i_wte), {V, C})),
                                T(m.view(m.tmp, {B, Tn, C}))),
          "dlk_embedding_forward");
    check(dlk_add_forward(m.ctx, T(m.view(m.tmp, {B, Tn, C})), T(m.view(P(i_wpe), {Tn, C})), 1.0f,
                          T(m.view(m.layers.empty() ? m.x_final : m.layers[0].x, {B, Tn, C}))),
          "dlk_add_forward (position embedding)");
    if (drop) dropout_inplace(m.layers.empty() ? m.x_final : m.layers[0].x, N * C, &m.off_emb);
  }

  dlk_layernorm_params lp;
  check(dlk_layernorm_params_init(&lp), "dlk_layernorm_params_init");
  dlk_linear_params lin;
  check(dlk_linear_params_init(&lin), "dlk_linear_params_init");
  dlk_linear_params lin_gelu = lin;
  lin_gelu.activation = DLK_EPILOGUE_GELU;
  dlk_attention_params ap;
  check(dlk_attention_params_init(&ap), "dlk_attention_params_init");
  ap.mask_kind = DLK_MASK_CAUSAL;
  ap.dropout_p = drop ? static_cast<float>(config_.dropout) : 0.0f;
  ap.seed = dropout_seed;

  for (std::size_t l = 0; l < L; ++l) {
    auto& ly = m.layers[l];
    float* x_next = l + 1 < L ? m.layers[l + 1].x : m.x_final;
    check(dlk_layernorm_forward(m.ctx, &lp, T(m.view(ly.x, {N, C})), T(m.view(P(nd(l, 0)), {C})),
                                T(m.view(P(nd(l, 1)), {C})), T(m.view(ly.h1, {N, C})), T(m.view(ly.ln1_mean, {N})),
                                T(m.view(ly.ln1_rstd, {N}))),
          "dlk_layernorm_forward (ln_1)");
    check(dlk_linear_forward(m.ctx, &lin, T(m.view(ly.h1, {N, C})), T(m.view(P(w_attn(l)), {3 * C, C})),
                             T(m.view(P(nd(l, 2)), {3 * C})), T(m.view(ly.qkv, {N, 3 * C})), nullptr),
          "dlk_linear_forward (c_attn)");
    if (drop) {
      ap.offset = dropout_offset;
      ly.off_attn = dropout_offset;
      dropout_offset += static_cast<std::uint64_t>(B) * H * Tn * Tn;
    }
    check(
        dlk_attention_forward(m.ctx, &ap, T(m.heads(ly.qkv, 0, 3 * C, B, H, Tn, D)),
                              T(m.heads(ly.qkv, C, 3 * C, B, H, Tn, D)), T(m.heads(ly.qkv, 2 * C, 3 * C, B, H, Tn, D)),
                              T(m.heads(ly.att, 0, C, B, H, Tn, D)), T(m.view(ly.lse, {B, H, Tn}))),
        "dlk_attention_forward");
    check(dlk_linear_forward(m.ctx, &lin, T(m.view(ly.att, {N, C})), T(m.view(P(w_proj(l)), {C, C})),
                             T(m.view(P(nd(l, 3)), {C})), T(m.view(m.tmp, {N, C})), nullptr),
          "dlk_linear_forward (attn c_proj)");
    if (drop) dropout_inplace(m.tmp, N * C, &ly.off_res1);
    check(dlk_add_forward(m.ctx, T(m.view(ly.x, {N, C})), T(m.view(m.tmp, {N, C})), 1.0f, T(m.view(ly.xm, {N, C}))),
          "dlk_add_forward (attention residual)");
    check(dlk_layernorm_forward(m.ctx, &lp, T(m.view(ly.xm, {N, C})), T(m.view(P(nd(l, 4)), {C})),
                                T(m.view(P(nd(l, 5)), {C})), T(m.view(ly.h2, {N, C})), T(m.view(ly.ln2_mean, {N})),
                                T(m.view(ly.ln2_rstd, {N}))),
          "dlk_layernorm_forward (ln_2)");
    check(dlk_linear_forward(m.ctx, &lin_gelu, T(m.view(ly.h2, {N, C})), T(m.view(P(w_fc(l)), {4 * C, C})),
                             T(m.view(P(nd(l, 6)), {4 * C})), T(m.view(ly.fc_a, {N, 4 * C})),
                             T(m.view(ly.fc_z, {N, 4 * C}))),
          "dlk_linear_forward (c_fc + GELU)");
    check(dlk_linear_forward(m.ctx, &lin, T(m.view(ly.fc_a, {N, 4 * C})), T(m.view(P(w_p2(l)), {C, 4 * C})),
                             T(m.view(P(nd(l, 7)), {C})), T(m.view(m.tmp, {N, C})), nullptr),
          "dlk_linear_forward (mlp c_proj)");
    if (drop) dropout_inplace(m.tmp, N * C, &ly.off_res2);
    check(dlk_add_forward(m.ctx, T(m.view(ly.xm, {N, C})), T(m.view(m.tmp, {N, C})), 1.0f, T(m.view(x_next, {N, C}))),
          "dlk_add_forward (MLP residual)");
  }

  check(dlk_layernorm_forward(m.ctx, &lp, T(m.view(m.x_final, {N, C})), T(m.view(P(i_lnfw), {C})),
                              T(m.view(P(i_lnfb), {C})), T(m.view(m.hf, {N, C})), T(m.view(m.lnf_mean, {N})),
                              T(m.view(m.lnf_rstd, {N}))),
        "dlk_layernorm_forward (ln_f)");
  check(dlk_linear_forward(m.ctx, &lin, T(m.view(m.hf, {N, C})), T(m.view(P(i_wte), {V, C})), nullptr,
                           T(m.view(m.logits, {N, V})), nullptr),
        "dlk_linear_forward (lm_head)");
  if (!targets) return std::nanf("");

  dlk_cross_entropy_params cp;
  check(dlk_cross_entropy_params_init(&cp), "dlk_cross_entropy_params_init");
  View logits = m.view(m.logits, {N, V});
  check(dlk_cross_entropy_forward(m.ctx, &cp, T(logits), T(m.iview(m.tgt, {N})), T(m.view(m.loss, {1})),
                                  training ? static_cast<DLTensor*>(T(logits)) : nullptr, nullptr),
        "dlk_cross_entropy_forward");
  float loss = 0;
  check(dlk_copy(m.ctx, &loss, host, m.loss, m.dev, 4), "dlk_copy loss");
  m.trained_forward = training;
  return loss;
}

void Model::backward() {
  Impl& m = *impl_;
  if (!m.trained_forward) throw Error("gpt: backward() needs a training forward with targets first");
  m.trained_forward = false;
  const int B = m.b, Tn = m.t;
  const std::int64_t C = config_.n_embd, H = config_.n_head, D = C / H, V = vocab_;
  const std::int64_t N = static_cast<std::int64_t>(B) * Tn;
  const bool drop = config_.dropout > 0;
  const std::size_t L = m.layers.size();
  auto P = [&](std::size_t i) { return m.param + params_[i].offset; };
  auto G = [&](std::size_t i) { return m.grad + params_[i].offset; };
  auto w_attn = [&](std::size_t l) { return 4 * l + 0; };
  auto w_proj = [&](std::size_t l) { return 4 * l + 1; };
  auto w_fc = [&](std::size_t l) { return 4 * l + 2; };
  auto w_p2 = [&](std::size_t l) { return 4 * l + 3; };
  const std::size_t i_wte = 4 * L, i_wpe = 4 * L + 1;
  auto nd = [&](std::size_t l, std::size_t k) { return 4 * L + 2 + 8 * l + k; };
  const std::size_t i_lnfw = 4 * L + 2 + 8 * L, i_lnfb = i_lnfw + 1;

  {
    View all = m.view(m.grad, {static_cast<std::int64_t>(num_params_)});
    T tg(all);
    DLTensor* list[] = {tg};
    check(dlk_zero_grad(m.ctx, 1, list), "dlk_zero_grad");
  }
  dlk_linear_params lin;
  check(dlk_linear_params_init(&lin), "dlk_linear_params_init");
  lin.accumulate = 1;
  dlk_linear_params lin_gelu = lin;
  lin_gelu.activation = DLK_EPILOGUE_GELU;
  dlk_layernorm_params lp;
  check(dlk_layernorm_params_init(&lp), "dlk_layernorm_params_init");
  lp.accumulate = 1;
  dlk_dropout_params dp;
  check(dlk_dropout_params_init(&dp), "dlk_dropout_params_init");
  dp.p = static_cast<float>(config_.dropout);
  dp.seed = dropout_seed;
  dlk_attention_params ap;
  check(dlk_attention_params_init(&ap), "dlk_attention_params_init");
  ap.mask_kind = DLK_MASK_CAUSAL;
  ap.dropout_p = drop ? static_cast<float>(config_.dropout) : 0.0f;
  ap.seed = dropout_seed;
  // dy through a dropout whose forward drew at `offset`: into `out` (returned), or dy itself without dropout.
  auto dropout_back = [&](float* dy, float* out, std::uint64_t offset) {
    if (!drop) return dy;
    dp.offset = offset;
    check(dlk_dropout_backward(m.ctx, &dp, T(m.view(dy, {N * C})), nullptr, T(m.view(out, {N * C}))),
          "dlk_dropout_backward");
    return out;
  };

  // LM head (tied): dhf = dlogits wte, dwte += dlogits^T hf.
  check(dlk_linear_backward(m.ctx, &lin, T(m.view(m.logits, {N, V})), T(m.view(m.hf, {N, C})),
                            T(m.view(P(i_wte), {V, C})), nullptr, T(m.view(m.tmp, {N, C})), T(m.view(G(i_wte), {V, C})),
                            nullptr),
        "dlk_linear_backward (lm_head)");
  check(dlk_layernorm_backward(m.ctx, &lp, T(m.view(m.tmp, {N, C})), T(m.view(m.x_final, {N, C})),
                               T(m.view(m.lnf_mean, {N})), T(m.view(m.lnf_rstd, {N})), T(m.view(P(i_lnfw), {C})),
                               T(m.view(m.dres, {N, C})), T(m.view(G(i_lnfw), {C})), T(m.view(G(i_lnfb), {C}))),
        "dlk_layernorm_backward (ln_f)");

  for (std::size_t li = L; li-- > 0;) {
    auto& ly = m.layers[li];
    // MLP branch: dres is d x_{l+1}; its identity path carries into d xm_l.
    float* dm = dropout_back(m.dres, m.tmp, ly.off_res2);
    check(dlk_linear_backward(m.ctx, &lin, T(m.view(dm, {N, C})), T(m.view(ly.fc_a, {N, 4 * C})),
                              T(m.view(P(w_p2(li)), {C, 4 * C})), nullptr, T(m.view(m.dbig, {N, 4 * C})),
                              T(m.view(G(w_p2(li)), {C, 4 * C})), T(m.view(G(nd(li, 7)), {C}))),
          "dlk_linear_backward (mlp c_proj)");
    check(dlk_linear_backward(m.ctx, &lin_gelu, T(m.view(m.dbig, {N, 4 * C})), T(m.view(ly.h2, {N, C})),
                              T(m.view(P(w_fc(li)), {4 * C, C})), T(m.view(ly.fc_z, {N, 4 * C})),
                              T(m.view(m.tmp2, {N, C})), T(m.view(G(w_fc(li)), {4 * C, C})),
                              T(m.view(G(nd(li, 6)), {4 * C}))),
          "dlk_linear_backward (c_fc + GELU)");
    check(dlk_layernorm_backward(m.ctx, &lp, T(m.view(m.tmp2, {N, C})), T(m.view(ly.xm, {N, C})),
                                 T(m.view(ly.ln2_mean, {N})), T(m.view(ly.ln2_rstd, {N})), T(m.view(P(nd(li, 4)), {C})),
                                 T(m.view(m.tmp, {N, C})), T(m.view(G(nd(li, 4)), {C})), T(m.view(G(nd(li, 5)), {C}))),
          "dlk_layernorm_backward (ln_2)");
    check(dlk_residual_add(m.ctx, T(m.view(m.tmp, {N, C})), 1.0f, T(m.view(m.dres, {N, C}))),
          "dlk_residual_add (d xm)");
    // Attention branch: dres is now d xm_l.
    float* da = dropout_back(m.dres, m.tmp, ly.off_res1);
    check(dlk_linear_backward(m.ctx, &lin, T(m.view(da, {N, C})), T(m.view(ly.att, {N, C})),
                              T(m.view(P(w_proj(li)), {C, C})), nullptr, T(m.view(m.datt, {N, C})),
                              T(m.view(G(w_proj(li)), {C, C})), T(m.view(G(nd(li, 3)), {C}))),
          "dlk_linear_backward (attn c_proj)");
    ap.offset = ly.off_attn;
    check(dlk_attention_backward(m.ctx, &ap, T(m.heads(ly.qkv, 0, 3 * C, B, H, Tn, D)),
                                 T(m.heads(ly.qkv, C, 3 * C, B, H, Tn, D)),
                                 T(m.heads(ly.qkv, 2 * C, 3 * C, B, H, Tn, D)), T(m.heads(ly.att, 0, C, B, H, Tn, D)),
                                 T(m.view(ly.lse, {B, H, Tn})), T(m.heads(m.datt, 0, C, B, H, Tn, D)),
                                 T(m.heads(m.dqkv, 0, 3 * C, B, H, Tn, D)), T(m.heads(m.dqkv, C, 3 * C, B, H, Tn, D)),
                                 T(m.heads(m.dqkv, 2 * C, 3 * C, B, H, Tn, D))),
          "dlk_attention_backward");
    check(dlk_linear_backward(m.ctx, &lin, T(m.view(m.dqkv, {N, 3 * C})), T(m.view(ly.h1, {N, C})),
                              T(m.view(P(w_attn(li)), {3 * C, C})), nullptr, T(m.view(m.tmp2, {N, C})),
                              T(m.view(G(w_attn(li)), {3 * C, C})), T(m.view(G(nd(li, 2)), {3 * C}))),
          "dlk_linear_backward (c_attn)");
    check(dlk_layernorm_backward(m.ctx, &lp, T(m.view(m.tmp2, {N, C})), T(m.view(ly.x, {N, C})),
                                 T(m.view(ly.ln1_mean, {N})), T(m.view(ly.ln1_rstd, {N})), T(m.view(P(nd(li, 0)), {C})),
                                 T(m.view(m.tmp, {N, C})), T(m.view(G(nd(li, 0)), {C})), T(m.view(G(nd(li, 1)), {C}))),
          "dlk_layernorm_backward (ln_1)");
    check(dlk_residual_add(m.ctx, T(m.view(m.tmp, {N, C})), 1.0f, T(m.view(m.dres, {N, C}))), "dlk_residual_add (d x)");
  }

  // Embeddings: dres is d x0 (after its dropout).
  float* demb = dropout_back(m.dres, m.tmp, m.off_emb);
  dlk_embedding_params ep;
  check(dlk_embedding_params_init(&ep), "dlk_embedding_params_init");
  ep.accumulate = 1;
  check(dlk_embedding_backward(m.ctx, &ep, T(m.iview(m.idx, {B, Tn})), T(m.view(demb, {B, Tn, C})),
                               T(m.view(G(i_wte), {V, C}))),
        "dlk_embedding_backward");
  // d wpe[:T] = sum over the batch (rows T.. of wpe stay zero).
  check(dlk_add_backward(m.ctx, T(m.view(demb, {B, Tn, C})), 1.0f, nullptr, T(m.view(G(i_wpe), {Tn, C}))),
        "dlk_add_backward (position embedding)");
}

float Model::optimizer_step(double lr) {
  Impl& m = *impl_;
  float norm = 0;
  View all = m.view(m.grad, {static_cast<std::int64_t>(num_params_)});
  {
    dlk_clip_grad_norm_params cp;
    check(dlk_clip_grad_norm_params_init(&cp), "dlk_clip_grad_norm_params_init");
    // max_norm 0 would zero the gradients: clipping off means an unreachable bound.
    cp.max_norm = config_.grad_clip > 0 ? config_.grad_clip : 1e30;
    T tg(all);
    DLTensor* list[] = {tg};
    check(dlk_clip_grad_norm(m.ctx, &cp, 1, list, &norm), "dlk_clip_grad_norm");
  }
  const auto nd = static_cast<std::int64_t>(m.decay_numel);
  const auto nn = static_cast<std::int64_t>(num_params_) - nd;
  View p0 = m.view(m.param, {nd}), p1 = m.view(m.param + nd, {nn});
  View g0 = m.view(m.grad, {nd}), g1 = m.view(m.grad + nd, {nn});
  View m0 = m.view(m.adam_m, {nd}), m1 = m.view(m.adam_m + nd, {nn});
  View v0 = m.view(m.adam_v, {nd}), v1 = m.view(m.adam_v + nd, {nn});
  T tp0(p0), tp1(p1), tg0(g0), tg1(g1), tm0(m0), tm1(m1), tv0(v0), tv1(v1);
  DLTensor* ps[] = {tp0, tp1};
  const DLTensor* gs[] = {tg0, tg1};
  DLTensor* ms[] = {tm0, tm1};
  DLTensor* vs[] = {tv0, tv1};
  dlk_adamw_params ap;
  check(dlk_adamw_params_init(&ap), "dlk_adamw_params_init");
  ap.lr = lr;
  ap.beta1 = config_.beta1;
  ap.beta2 = config_.beta2;
  ap.eps = 1e-8;
  ap.step = ++adam_step;
  const std::int32_t groups[] = {0, 1};
  const double group_lr[] = {lr, lr};
  const double group_wd[] = {config_.weight_decay, 0.0};
  ap.num_groups = 2;
  ap.tensor_group = groups;
  ap.group_lr = group_lr;
  ap.group_weight_decay = group_wd;
  // An empty decay group (n_layer 0) is a zero-size tensor, which the optimizer accepts.
  check(dlk_adamw_step(m.ctx, &ap, 2, ps, gs, ms, vs, nullptr), "dlk_adamw_step");
  return norm;
}

std::vector<float> Model::last_logits() {
  Impl& m = *impl_;
  std::vector<float> out(static_cast<std::size_t>(vocab_));
  const std::size_t row = static_cast<std::size_t>(m.t - 1) * static_cast<std::size_t>(vocab_);
  check(dlk_copy(m.ctx, out.data(), DLDevice{kDLCPU, 0}, m.logits + row, m.dev, out.size() * 4), "dlk_copy logits");
  return out;
}

namespace {
std::vector<float> download(dlk_context* ctx, const float* src, DLDevice dev, std::size_t n) {
  std::vector<float> out(n);
  if (n) check(dlk_copy(ctx, out.data(), DLDevice{kDLCPU, 0}, src, dev, n * 4), "dlk_copy");
  return out;
}
void upload(dlk_context* ctx, float* dst, DLDevice dev, const std::vector<float>& v, std::size_t n) {
  if (v.size() != n) throw Error("gpt: parameter vector has the wrong size");
  if (n) check(dlk_copy(ctx, dst, dev, v.data(), DLDevice{kDLCPU, 0}, n * 4), "dlk_copy");
}
}  // namespace

std::vector<float> Model::get_params() const { return download(impl_->ctx, impl_->param, impl_->dev, num_params_); }
std::vector<float> Model::get_grads() const { return download(impl_->ctx, impl_->grad, impl_->dev, num_params_); }
std::vector<float> Model::get_adam_m() const { return download(impl_->ctx, impl_->adam_m, impl_->dev, num_params_); }
std::vector<float> Model::get_adam_v() const { return download(impl_->ctx, impl_->adam_v, impl_->dev, num_params_); }
void Model::set_params(const std::vector<float>& v) { upload(impl_->ctx, impl_->param, impl_->dev, v, num_params_); }
void Model::set_adam_state(const std::vector<float>& mv, const std::vector<float>& vv) {
  upload(impl_->ctx, impl_->adam_m, impl_->dev, mv, num_params_);
  upload(impl_->ctx, impl_->adam_v, impl_->dev, vv, num_params_);
}

}  // namespace gpt
