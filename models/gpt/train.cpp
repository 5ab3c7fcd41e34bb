// Training loop, checkpoints, sampling and the `dlk train gpt` / `dlk sample gpt` command lines.
//
// Reproducibility: the context is deterministic, the batch sampler is a splitmix64 stream whose whole state is one
// integer, dropout draws come from Philox at an offset the model advances, and evaluations draw their batches from a
// stream seeded by (seed, step) so they never disturb training. A checkpoint stores all of it, so on the cpu backend
// (same thread count) a resumed run repeats an uninterrupted one bit for bit.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "gpt.h"

namespace gpt {

// ------------------------------------------------------------------------------------------------ batch sampler

std::uint64_t splitmix64(std::uint64_t* state) {
  std::uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void sample_batch(const std::vector<std::int32_t>& data, const std::vector<std::vector<std::uint32_t>>& starts,
                  int batch, int t, std::uint64_t* state, std::vector<std::int32_t>* x, std::vector<std::int32_t>* y) {
  const std::size_t T = static_cast<std::size_t>(t);
  x->resize(static_cast<std::size_t>(batch) * T);
  y->resize(x->size());
  const std::uint64_t span = data.size() - T;  // starts in [0, size - T - 1]
  for (std::size_t b = 0; b < static_cast<std::size_t>(batch); ++b) {
    std::size_t start = 0;
    if (starts.empty()) {
      start = static_cast<std::size_t>(splitmix64(state) % span);
    } else {
      const auto& cls = starts[static_cast<std::size_t>(splitmix64(state) % starts.size())];
      start = cls[static_cast<std::size_t>(splitmix64(state) % cls.size())];
      if (start >= span) start = 0;  // callers keep starts in range; never read past the end
    }
    std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(start), T, x->begin() + static_cast<std::ptrdiff_t>(b * T));
    std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(start + 1), T,
                y->begin() + static_cast<std::ptrdiff_t>(b * T));
  }
}

float estimate_loss(Model& model, const std::vector<std::int32_t>& data,
                    const std::vector<std::vector<std::uint32_t>>& starts, std::uint64_t seed) {
  const Config& c = model.config();
  const int t = std::min<int>(c.block_size, static_cast<int>(data.size()) - 1);
  std::uint64_t state = seed;
  std::vector<std::int32_t> x, y;
  double sum = 0;
  for (int i = 0; i < c.eval_iters; ++i) {
    sample_batch(data, starts, c.batch_size, t, &state, &x, &y);
    sum += model.forward(x.data(), y.data(), c.batch_size, t, false);
  }
  return static_cast<float>(sum / c.eval_iters);
}

std::vector<std::int32_t> generate(Model& model, std::vector<std::int32_t> ids, int max_new_tokens, double temperature,
                                   int top_k, std::uint64_t seed) {
  const int block = model.config().block_size;
  std::uint64_t state = seed;
  std::vector<double> p;
  for (int n = 0; n < max_new_tokens; ++n) {
    const std::size_t ctx = std::min<std::size_t>(ids.size(), static_cast<std::size_t>(block));
    const std::int32_t* window = ids.data() + (ids.size() - ctx);
    model.forward(window, nullptr, 1, static_cast<int>(ctx), false);
    std::vector<float> logits = model.last_logits();
    const int V = static_cast<int>(logits.size());
    // top-k: keep the k largest logits (ties at the threshold kept), the rest get probability 0
    float threshold = -INFINITY;
    if (top_k > 0 && top_k < V) {
      std::vector<float> sorted = logits;
      std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<float>());
      threshold = sorted[static_cast<std::size_t>(top_k - 1)];
    }
    double mx = -INFINITY;
    for (float l : logits)
      if (l >= threshold) mx = std::max<double>(mx, l);
    p.assign(static_cast<std::size_t>(V), 0.0);
    double total = 0;
    for (int i = 0; i < V; ++i)
      if (logits[static_cast<std::size_t>(i)] >= threshold)
        total += p[static_cast<std::size_t>(i)] = std::exp((logits[static_cast<std::size_t>(i)] - mx) / temperature);
    const double u = static_cast<double>(splitmix64(&state) >> 11) * 0x1.0p-53 * total;
    double acc = 0;
    int pick = -1;
    for (int i = 0; i < V; ++i) {
      if (p[static_cast<std::size_t>(i)] == 0) continue;
      pick = i;
      acc += p[static_cast<std::size_t>(i)];
      if (u < acc) break;
    }
    ids.push_back(pick);
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------------- checkpoints

namespace {

const char kMagic[8] = {'D', 'L', 'K', 'G', 'P', 'T', '\0', '\1'};

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

struct Writer {
  std::string buf;
  template <typename V>
  void pod(const V& v) {
    buf.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(const std::string& s) {
    pod<std::uint64_t>(s.size());
    buf += s;
  }
  template <typename V>
  void vec(const std::vector<V>& v) {
    pod<std::uint64_t>(v.size());
    if (!v.empty()) buf.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(V));
  }
};

struct Reader {
  const std::string& buf;
  std::size_t pos = 0;
  bool ok = true;
  template <typename V>
  V pod() {
    V v{};
    if (pos + sizeof v > buf.size()) {
      ok = false;
      return v;
    }
    std::memcpy(&v, buf.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
  std::string str() {
    auto n = pod<std::uint64_t>();
    if (!ok || n > buf.size() - pos) {
      ok = false;
      return {};
    }
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
  template <typename V>
  std::vector<V> vec() {
    auto n = pod<std::uint64_t>();
    if (!ok || n > (buf.size() - pos) / sizeof(V)) {
      ok = false;
      return {};
    }
    std::vector<V> v(n);
    if (n) std::memcpy(v.data(), buf.data() + pos, n * sizeof(V));
    pos += n * sizeof(V);
    return v;
  }
};

bool write_atomic(const std::string& path, const std::string& bytes, std::string* error) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    *error = "cannot create " + tmp + ": " + std::strerror(errno);
    return false;
  }
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      *error = "cannot write " + tmp + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    *error = "cannot flush " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  // the rename itself must reach the disk: fsync the directory
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

}  // namespace

bool save_checkpoint(const std::string& path, const Model& model, const Corpus& corpus, const TrainState& s,
                     std::string* error) {
  Writer w;
  w.str(config_to_text(model.config()));
  w.str(corpus.source);
  w.pod(corpus.hash);
  std::vector<std::uint32_t> vocab(corpus.tokenizer.symbols.begin(), corpus.tokenizer.symbols.end());
  w.vec(vocab);
  w.pod<std::int64_t>(s.step);
  w.pod<std::int64_t>(model.adam_step);
  w.pod(model.dropout_offset);
  w.pod(model.dropout_seed);
  w.pod(s.sampler_state);
  w.vec(model.get_params());
  w.vec(model.get_adam_m());
  w.vec(model.get_adam_v());
  w.vec(s.loss_steps);
  w.vec(s.losses);
  w.vec(s.lrs);
  w.vec(s.eval_steps);
  w.vec(s.eval_train);
  w.vec(s.eval_val);
  std::string file(kMagic, sizeof kMagic);
  const std::uint64_t size = w.buf.size(), sum = fnv1a(w.buf);
  file.append(reinterpret_cast<const char*>(&size), 8);
  file += w.buf;
  file.append(reinterpret_cast<const char*>(&sum), 8);
  return write_atomic(path, file, error);
}

bool load_checkpoint(const std::string& path, Checkpoint* ck, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot open checkpoint " + path;
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string file = ss.str();
  std::uint64_t size = 0, sum = 0;
  if (file.size() < 24 || std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) {
    *error = path + " is not a dlk GPT checkpoint";
    return false;
  }
  std::memcpy(&size, file.data() + 8, 8);
  if (size != file.size() - 24) {
    *error = path + ": truncated checkpoint (" + std::to_string(file.size()) + " bytes, header says " +
             std::to_string(size + 24) + ")";
    return false;
  }
  std::memcpy(&sum, file.data() + 16 + size, 8);
  const std::string payload = file.substr(16, size);
  if (fnv1a(payload) != sum) {
    *error = path + ": checksum mismatch, the checkpoint is corrupt";
    return false;
  }
  Reader r{payload};
  const std::string cfg = r.str();
  ck->config = Config{};
  std::istringstream lines(cfg);
  for (std::string line; std::getline(lines, line);) {
    auto eq = line.find('=');
    if (eq == std::string::npos || !config_set(&ck->config, line.substr(0, eq), line.substr(eq + 1), error)) {
      *error = path + ": bad config line '" + line + "'";
      return false;
    }
  }
  ck->source = r.str();
  ck->data_hash = r.pod<std::uint64_t>();
  auto vocab = r.vec<std::uint32_t>();
  ck->tokenizer.symbols.assign(vocab.begin(), vocab.end());
  ck->state = TrainState{};
  ck->state.step = static_cast<int>(r.pod<std::int64_t>());
  ck->adam_step = r.pod<std::int64_t>();
  ck->dropout_offset = r.pod<std::uint64_t>();
  ck->dropout_seed = r.pod<std::uint64_t>();
  ck->state.sampler_state = r.pod<std::uint64_t>();
  ck->params = r.vec<float>();
  ck->adam_m = r.vec<float>();
  ck->adam_v = r.vec<float>();
  ck->state.loss_steps = r.vec<int>();
  ck->state.losses = r.vec<float>();
  ck->state.lrs = r.vec<float>();
  ck->state.eval_steps = r.vec<int>();
  ck->state.eval_train = r.vec<float>();
  ck->state.eval_val = r.vec<float>();
  if (!r.ok || r.pos != payload.size() || ck->adam_m.size() != ck->params.size() ||
      ck->adam_v.size() != ck->params.size() || vocab.empty()) {
    *error = path + ": malformed checkpoint payload";
    return false;
  }
  return config_validate(ck->config, error);
}

void restore_model(const Checkpoint& ck, Model* model) {
  model->set_params(ck.params);
  model->set_adam_state(ck.adam_m, ck.adam_v);
  model->adam_step = ck.adam_step;
  model->dropout_offset = ck.dropout_offset;
  model->dropout_seed = ck.dropout_seed;
}

// ---------------------------------------------------------------------------------------------------- training

namespace {

std::atomic<int> g_stop_signal{0};

std::string fmt_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

struct ContextGuard {
  dlk_context* ctx = nullptr;
  ~ContextGuard() { dlk_context_destroy(ctx); }
};

bool make_context(dlk_device device, int threads, std::uint64_t seed, ContextGuard* g, std::string* error) {
  dlk_context_options o;
  dlk_context_options_init(&o);
  o.device = device;
  o.deterministic = 1;
  o.seed = seed;
  o.num_threads = threads;
  dlk_status s = dlk_context_create(&o, &g->ctx);
  if (s != DLK_SUCCESS) {
    *error = std::string("cannot create a ") + dlk_device_name(device) + " context: " + dlk_last_error();
    return false;
  }
  return true;
}

}  // namespace

void request_stop(int signal_number) { g_stop_signal.store(signal_number); }

bool write_loss_csv(const std::string& path, const TrainState& s, std::string* error) {
  std::ostringstream out;
  out << "step,train_loss,lr,eval_train_loss,eval_val_loss\n";
  std::size_t e = 0;
  auto emit_eval = [&](std::size_t k) {
    out << s.eval_steps[k] << ",,," << s.eval_train[k] << ',' << s.eval_val[k] << '\n';
  };
  for (std::size_t i = 0; i < s.loss_steps.size(); ++i) {
    while (e < s.eval_steps.size() && s.eval_steps[e] <= s.loss_steps[i]) emit_eval(e++);
    out << s.loss_steps[i] << ',' << s.losses[i] << ',' << s.lrs[i] << ",,\n";
  }
  while (e < s.eval_steps.size()) emit_eval(e++);
  return write_atomic(path, out.str(), error);
}

bool train(const TrainOptions& opt, TrainResult* result, std::string* error) {
  *result = TrainResult{};
  g_stop_signal.store(0);
  ::mkdir(opt.out_dir.c_str(), 0755);
  const std::string ckpt_path = opt.out_dir + "/ckpt.bin";
  Config cfg = opt.config;
  Checkpoint ck;
  bool resumed = false;
  if (opt.resume) {
    if (::access(ckpt_path.c_str(), F_OK) != 0) {
      if (!opt.quiet) std::printf("no checkpoint at %s: starting from scratch\n", ckpt_path.c_str());
    } else {
      if (!load_checkpoint(ckpt_path, &ck, error)) return false;
      resumed = true;
      // The checkpoint's config wins; only options given again on this command line change it (e.g. --max-iters).
      cfg = ck.config;
      for (const auto& kv : opt.overrides) {
        auto eq = kv.find('=');
        if (!config_set(&cfg, kv.substr(0, eq), kv.substr(eq + 1), error)) return false;
      }
      if (cfg.n_layer != ck.config.n_layer || cfg.n_head != ck.config.n_head || cfg.n_embd != ck.config.n_embd ||
          cfg.block_size != ck.config.block_size) {
        *error =
            "--resume: the model shape (n_layer, n_head, n_embd, block_size) comes from the checkpoint and "
            "cannot change";
        return false;
      }
    }
  }
  if (!config_validate(cfg, error)) return false;

  Corpus corpus;
  const std::string source = resumed ? ck.source : opt.source;
  if (!load_corpus(source, &corpus, error)) return false;
  if (resumed && (corpus.hash != ck.data_hash || corpus.tokenizer.symbols != ck.tokenizer.symbols)) {
    *error = "--resume: the data of " + source + " changed since the checkpoint was written";
    return false;
  }
  const int t = cfg.block_size;
  if (corpus.train.size() <= static_cast<std::size_t>(t) + 1 || corpus.val.size() <= 2) {
    *error = source + ": too short for block_size " + std::to_string(t);
    return false;
  }

  ContextGuard cg;
  if (!make_context(opt.device, opt.num_threads, cfg.seed, &cg, error)) return false;
  dlk_device used = DLK_DEVICE_CPU;
  dlk_context_device(cg.ctx, &used);

  try {
    Model model(cg.ctx, cfg, corpus.tokenizer.vocab_size(), cfg.batch_size, t);
    model.init(cfg.seed);
    TrainState st;
    st.sampler_state = cfg.seed * 0x9E3779B97F4A7C15ULL + 1;
    if (resumed) {
      if (ck.params.size() != model.num_params()) {
        *error = "--resume: the checkpoint's parameter count does not match its config";
        return false;
      }
      restore_model(ck, &model);
      st = ck.state;
    }
    if (!opt.quiet) {
      std::printf(
          "gpt: %s, %zu parameters (%d layers, %d heads, %d embd, block %d), vocab %d, train %zu / val %zu "
          "tokens, batch %d, device %s%s\n",
          source.c_str(), model.num_params(), cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size,
          corpus.tokenizer.vocab_size(), corpus.train.size(), corpus.val.size(), cfg.batch_size, dlk_device_name(used),
          resumed ? (", resumed at step " + std::to_string(st.step)).c_str() : "");
      std::fflush(stdout);
    }
    result->first_step = st.step;
    std::vector<std::int32_t> x, y;
    const double tokens_per_step = static_cast<double>(cfg.batch_size) * t;
    double train_seconds = 0, steady_seconds = 0;
    int timed_steps = 0, steady_steps = 0;
    auto save = [&](const char* why) {
      std::string err;
      if (!save_checkpoint(ckpt_path, model, corpus, st, &err)) throw Error(err);
      result->checkpoint = ckpt_path;
      if (!opt.quiet && why) std::printf("saved %s at step %d (%s)\n", ckpt_path.c_str(), st.step, why);
    };
    auto evaluate = [&]() {
      const std::uint64_t es = cfg.seed ^ (0xE7A1ULL + static_cast<std::uint64_t>(st.step) * 0x9E3779B97F4A7C15ULL);
      const float tr = estimate_loss(model, corpus.train, corpus.train_starts, es);
      const float va = estimate_loss(model, corpus.val, corpus.val_starts, es + 1);
      st.eval_steps.push_back(st.step);
      st.eval_train.push_back(tr);
      st.eval_val.push_back(va);
      if (!opt.quiet) {
        std::printf("step %d: train loss %.4f, val loss %.4f\n", st.step, tr, va);
        std::fflush(stdout);
      }
    };
    while (st.step < cfg.max_iters) {
      if (cfg.eval_interval > 0 && st.step % cfg.eval_interval == 0 &&
          (st.eval_steps.empty() || st.eval_steps.back() != st.step))
        evaluate();
      const auto t0 = std::chrono::steady_clock::now();
      const double lr = learning_rate(cfg, st.step);
      sample_batch(corpus.train, corpus.train_starts, cfg.batch_size, t, &st.sampler_state, &x, &y);
      const float loss = model.forward(x.data(), y.data(), cfg.batch_size, t, true);
      model.backward();
      const float norm = model.optimizer_step(lr);
      st.loss_steps.push_back(st.step);
      st.losses.push_back(loss);
      st.lrs.push_back(static_cast<float>(lr));
      result->losses.push_back(loss);
      ++st.step;
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      train_seconds += dt;
      ++timed_steps;
      // the steady-state rate leaves out the first 3 steps (allocation, BLAS/cuBLAS start-up)
      if (st.step - result->first_step > 3) steady_seconds += dt, ++steady_steps;
      if (!std::isfinite(loss))
        throw Error("the loss diverged to " + std::to_string(loss) + " at step " + std::to_string(st.step - 1));
      if (!opt.quiet && (st.step % cfg.log_interval == 0 || st.step == cfg.max_iters || st.step == 1)) {
        const double per_step = train_seconds / timed_steps;
        std::printf("step %5d/%d | loss %.4f | lr %.2e | |g| %.3f | %.0f tok/s | ETA %s\n", st.step, cfg.max_iters,
                    loss, lr, norm, tokens_per_step / per_step,
                    fmt_duration(per_step * (cfg.max_iters - st.step)).c_str());
        std::fflush(stdout);
      }
      if (cfg.ckpt_interval > 0 && st.step % cfg.ckpt_interval == 0 && st.step < cfg.max_iters)
        save(opt.quiet ? nullptr : "interval");
      if (int sig = g_stop_signal.load()) {
        save(sig == SIGTERM ? "SIGTERM" : "interrupted");
        result->interrupted = true;
        result->signal_number = sig;
        break;
      }
    }
    if (!result->interrupted) {
      if (cfg.eval_interval > 0 && (st.eval_steps.empty() || st.eval_steps.back() != st.step)) evaluate();
      save(opt.quiet ? nullptr : "end of training");
    }
    result->last_step = st.step;
    if (opt.write_plots) {
      std::string err;
      if (!write_loss_csv(opt.out_dir + "/loss.csv", st, &err)) throw Error(err);
      if (!opt.quiet) std::printf("wrote %s/loss.csv\n", opt.out_dir.c_str());
      if (write_loss_png(opt.out_dir + "/loss.png", st, &err)) {
        if (!opt.quiet) std::printf("wrote %s/loss.png\n", opt.out_dir.c_str());
      } else if (!opt.quiet) {
        std::printf("no loss.png: %s\n", err.c_str());
      }
    }
    if (!opt.quiet && timed_steps > 0)
      std::printf("%d steps in %s, %.0f tokens/s (training steps after the first 3)\n", timed_steps,
                  fmt_duration(train_seconds).c_str(),
                  steady_steps > 0 ? tokens_per_step * steady_steps / steady_seconds
                                   : tokens_per_step * timed_steps / train_seconds);
    if (!result->interrupted && opt.sample_tokens > 0 && !opt.quiet) {
      // A prompt from the start of the validation text, continued at temperature 0.8 / top-k 20.
      std::vector<std::int32_t> prompt(corpus.val.begin(),
                                       corpus.val.begin() + std::min<std::ptrdiff_t>(8, corpus.val.size()));
      auto ids = generate(model, prompt, opt.sample_tokens, 0.8, 20, cfg.seed);
      std::printf("sample (prompt \"%s\", temperature 0.8, top-k 20):\n%s\n",
                  utf8_encode(corpus.tokenizer.decode(prompt)).c_str(),
                  utf8_encode(corpus.tokenizer.decode(ids)).c_str());
    }
  } catch (const Error& e) {
    *error = e.what();
    return false;
  }
  return true;
}

// ------------------------------------------------------------------------------------------------------------ CLI

namespace {

bool parse_device(const std::string& d, dlk_device* out) {
  if (d == "auto")
    *out = DLK_DEVICE_AUTO;
  else if (d == "cpu")
    *out = DLK_DEVICE_CPU;
  else if (d == "cuda")
    *out = DLK_DEVICE_CUDA;
  else if (d == "emu")
    *out = DLK_DEVICE_EMU;
  else
    return false;
  return true;
}

const char* kTrainUsage =
    "usage: dlk train gpt [--data FILE | --task counting] [--config small|nanogpt] [--device auto|cpu|cuda|emu]\n"
    "                     [--max-iters N] [--out DIR] [--resume] [--threads N] [--sample-tokens N] [--quiet]\n"
    "                     [--n-layer N] [--n-head N] [--n-embd N] [--block-size N] [--batch-size N] [--dropout P]\n"
    "                     [--lr X] [--min-lr X] [--weight-decay X] [--beta1 X] [--beta2 X] [--grad-clip X]\n"
    "                     [--warmup-iters N] [--lr-decay-iters N] [--eval-interval N] [--eval-iters N]\n"
    "                     [--log-interval N] [--ckpt-interval N] [--seed N]\n"
    "  Trains a character-level GPT. Default data: Debian's fortunes databases; default config: nanogpt.\n"
    "  Writes DIR/ckpt.bin (every --ckpt-interval steps, on Ctrl-C and at the end), DIR/loss.csv, DIR/loss.png.\n"
    "  --resume continues from DIR/ckpt.bin (same data, config from the checkpoint plus the flags given again).\n";

const char* kSampleUsage =
    "usage: dlk sample gpt --ckpt FILE [--prompt STR] [--temperature T] [--top-k K] [--max-new-tokens N]\n"
    "                      [--seed N] [--device auto|cpu|cuda|emu] [--threads N]\n";

}  // namespace

int train_cli(int argc, char** argv) {
  TrainOptions opt;
  std::string preset = "nanogpt";
  std::vector<std::pair<std::string, std::string>> fields;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "dlk train gpt: %s needs a value\n%s", a.c_str(), kTrainUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kTrainUsage, stdout);
      return 0;
    } else if (a == "--data") {
      opt.source = value();
    } else if (a == "--task") {
      std::string task = value();
      if (task != "counting") {
        std::fprintf(stderr, "dlk train gpt: unknown task '%s' (known: counting)\n", task.c_str());
        return 2;
      }
      opt.source = task;
    } else if (a == "--config") {
      preset = value();
    } else if (a == "--device") {
      std::string d = value();
      if (!parse_device(d, &opt.device)) {
        std::fprintf(stderr, "dlk train gpt: unknown device '%s'\n", d.c_str());
        return 2;
      }
    } else if (a == "--out") {
      opt.out_dir = value();
    } else if (a == "--resume") {
      opt.resume = true;
    } else if (a == "--quiet") {
      opt.quiet = true;
    } else if (a == "--threads") {
      opt.num_threads = std::atoi(value().c_str());
    } else if (a == "--sample-tokens") {
      opt.sample_tokens = std::atoi(value().c_str());
    } else if (a.rfind("--", 0) == 0) {
      fields.emplace_back(a.substr(2), value());
    } else {
      std::fprintf(stderr, "dlk train gpt: unexpected argument '%s'\n%s", a.c_str(), kTrainUsage);
      return 2;
    }
  }
  if (!config_preset(preset, &opt.config)) {
    std::fprintf(stderr, "dlk train gpt: unknown config '%s' (known: small, nanogpt)\n", preset.c_str());
    return 2;
  }
  for (const auto& [k, v] : fields) {
    std::string err;
    if (!config_set(&opt.config, k, v, &err)) {
      std::fprintf(stderr, "dlk train gpt: --%s: %s\n", k.c_str(), err.c_str());
      return 2;
    }
    if (k == "max-iters" || k == "max_iters") {
      // a shorter run keeps the cosine schedule's shape unless the decay length was given too
      bool decay_given = false;
      for (const auto& f : fields) decay_given |= f.first == "lr-decay-iters" || f.first == "lr_decay_iters";
      if (!decay_given && !opt.resume) opt.config.lr_decay_iters = 0;
    }
    opt.overrides.push_back(k + "=" + v);
  }
  struct sigaction sa {};
  sa.sa_handler = [](int s) { request_stop(s); };
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  TrainResult result;
  std::string err;
  const bool ok = train(opt, &result, &err);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  if (!ok) {
    std::fprintf(stderr, "dlk train gpt: %s\n", err.c_str());
    return 1;
  }
  if (result.interrupted) {
    std::printf("stopped at step %d; continue with the same command plus --resume\n", result.last_step);
    return 128 + result.signal_number;  // the shell's convention for a run stopped by a signal (130 for Ctrl-C)
  }
  return 0;
}

int sample_cli(int argc, char** argv) {
  std::string ckpt, prompt = "\n";
  double temperature = 0.8;
  int top_k = 0, max_new = 200, threads = 0;
  std::uint64_t seed = 1;
  dlk_device device = DLK_DEVICE_AUTO;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "dlk sample gpt: %s needs a value\n%s", a.c_str(), kSampleUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kSampleUsage, stdout);
      return 0;
    } else if (a == "--ckpt") {
      ckpt = value();
    } else if (a == "--prompt") {
      prompt = value();
    } else if (a == "--temperature") {
      temperature = std::atof(value().c_str());
    } else if (a == "--top-k") {
      top_k = std::atoi(value().c_str());
    } else if (a == "--max-new-tokens") {
      max_new = std::atoi(value().c_str());
    } else if (a == "--seed") {
      seed = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--threads") {
      threads = std::atoi(value().c_str());
    } else if (a == "--device") {
      std::string d = value();
      if (!parse_device(d, &device)) {
        std::fprintf(stderr, "dlk sample gpt: unknown device '%s'\n", d.c_str());
        return 2;
      }
    } else {
      std::fprintf(stderr, "dlk sample gpt: unexpected argument '%s'\n%s", a.c_str(), kSampleUsage);
      return 2;
    }
  }
  if (ckpt.empty()) {
    std::fputs(kSampleUsage, stderr);
    return 2;
  }
  if (!(temperature > 0) || !std::isfinite(temperature) || max_new < 0 || top_k < 0) {
    std::fprintf(stderr, "dlk sample gpt: need --temperature > 0, --top-k >= 0, --max-new-tokens >= 0\n");
    return 2;
  }
  Checkpoint ck;
  std::string err;
  if (!load_checkpoint(ckpt, &ck, &err)) {
    std::fprintf(stderr, "dlk sample gpt: %s\n", err.c_str());
    return 1;
  }
  std::u32string text;
  std::vector<std::int32_t> ids;
  if (!utf8_decode(prompt, &text, &err) || !ck.tokenizer.encode(text, &ids, &err) || ids.empty()) {
    std::fprintf(stderr, "dlk sample gpt: --prompt: %s\n", ids.empty() && err.empty() ? "empty prompt" : err.c_str());
    return 1;
  }
  ContextGuard cg;
  if (!make_context(device, threads, ck.config.seed, &cg, &err)) {
    std::fprintf(stderr, "dlk sample gpt: %s\n", err.c_str());
    return 1;
  }
  try {
    Model model(cg.ctx, ck.config, ck.tokenizer.vocab_size(), 1, ck.config.block_size);
    restore_model(ck, &model);
    auto out = generate(model, ids, max_new, temperature, top_k, seed);
    std::printf("%s\n", utf8_encode(ck.tokenizer.decode(out)).c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "dlk sample gpt: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace gpt
