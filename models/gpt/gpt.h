// models/gpt: a character-level GPT (nanoGPT's architecture) trained end to end through the public C API only.
//
// Everything here is built on include/dlk/dlk.h, the way a user program would be: the model owns its parameters,
// activations and optimizer state in memory from dlk_alloc, runs its forward and its explicit backward as a
// sequence of dlk_* calls, and keeps no hidden framework state. The `dlk` CLI (tools/dlk.cpp) calls train_cli and
// sample_cli; tests/test_gpt.cpp drives the same classes directly.
#pragma once

#include <dlk/dlk.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace gpt {

// ------------------------------------------------------------------------------------------------ configuration

// Model shape and training hyperparameters. Every field has a CLI flag (--n-layer, --lr, ...).
struct Config {
  int n_layer = 6;
  int n_head = 6;
  int n_embd = 384;
  int block_size = 256;
  int batch_size = 64;
  double dropout = 0.2;
  double lr = 3e-4;           // peak learning rate, after warmup
  double min_lr = 3e-5;       // the cosine schedule ends here (nanoGPT: lr / 10)
  double weight_decay = 0.1;  // on the linear layers' weights only (see Model's parameter layout)
  double beta1 = 0.9;
  double beta2 = 0.99;
  double grad_clip = 1.0;  // clip_grad_norm max_norm; 0 disables
  int max_iters = 5000;
  int warmup_iters = 100;
  int lr_decay_iters = 0;  // 0: max_iters
  int eval_interval = 250;
  int eval_iters = 200;  // batches per split in an evaluation
  int log_interval = 10;
  int ckpt_interval = 500;  // steps between checkpoints (0: only at the end)
  std::uint64_t seed = 1337;
};

// "nanogpt" (the nanoGPT shakespeare-char model) or "small" (trains on 2 CPU cores in minutes). False if unknown.
bool config_preset(const std::string& name, Config* config);
// Sets one field by its flag name without dashes ("n_layer" or "n-layer"); false with *error set when the name or
// the value is bad.
bool config_set(Config* config, const std::string& key, const std::string& value, std::string* error);
// All fields as "key=value" lines, readable by config_set (checkpoints store this).
std::string config_to_text(const Config& config);
// Rejects shapes the model cannot run (n_embd not divisible by n_head, non-positive sizes, ...).
bool config_validate(const Config& config, std::string* error);
// nanoGPT's schedule: linear warmup, cosine decay to min_lr at lr_decay_iters, min_lr after.
double learning_rate(const Config& config, int step);

// ------------------------------------------------------------------------------------------------------- data

// UTF-8 <-> code points. utf8_decode returns false (and the byte offset in *error) on malformed input.
bool utf8_decode(const std::string& bytes, std::u32string* out, std::string* error);
std::string utf8_encode(const std::u32string& text);

// Character tokenizer: the sorted distinct code points of the training text, id = rank.
struct Tokenizer {
  std::vector<char32_t> symbols;
  static Tokenizer from_text(const std::u32string& text);
  int vocab_size() const { return static_cast<int>(symbols.size()); }
  // False (with the offending character in *error) when a character is not in the vocabulary.
  bool encode(const std::u32string& text, std::vector<std::int32_t>* ids, std::string* error) const;
  std::u32string decode(const std::vector<std::int32_t>& ids) const;
};

// A tokenized corpus: the first 90% of the tokens train, the last 10% are held out for validation.
struct Corpus {
  std::string source;  // "counting", "fortunes" or the file path: how to rebuild it on --resume
  Tokenizer tokenizer;
  std::vector<std::int32_t> train, val;
  std::uint64_t hash = 0;  // of the whole token stream; a resumed run checks it
  // Where windows may start, in classes drawn with equal probability (empty: anywhere, uniformly). The counting task
  // starts windows at the first digit of a number, with the number's digit count uniform over 1..6: a prompt such
  // as "1234," is then a whole number, and 4-digit numbers (0.9% of the text) are seen as often as 6-digit ones.
  std::vector<std::vector<std::uint32_t>> train_starts, val_starts;
};

// GPTutorial's counting task: "0,1,2,...,<last>" generated in memory (11 symbols).
std::string counting_text(int last = 999999);
// The default natural-language corpus: every fortune database of Debian's `fortunes` package
// (/usr/share/games/fortunes/<name>, the files without an extension, in name order).
bool fortunes_text(std::string* text, std::string* error);
// Builds a Corpus from UTF-8 text (tokenizer from the text, 90/10 split).
bool make_corpus(const std::string& source, const std::string& utf8, Corpus* corpus, std::string* error);
// source "counting", "fortunes", or a file path.
bool load_corpus(const std::string& source, Corpus* corpus, std::string* error);

// ------------------------------------------------------------------------------------------------------ model

// One parameter tensor: a slice of the flat parameter buffer.
struct ParamInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;  // in floats, into the flat buffer
  std::size_t numel = 0;
  bool decay = false;  // in the weight-decay group
};

// Thrown by Model (and caught by train() and the CLI) when a dlk_* call fails; carries dlk_last_error().
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Model {
 public:
  // Allocates parameters, gradients, AdamW state and the activations of a [max_batch, max_t] batch on `context`.
  Model(dlk_context* context, const Config& config, int vocab_size, int max_batch, int max_t);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // nanoGPT's initialisation: normal(0, 0.02) weights and embeddings, residual projections normal(0,
  // 0.02 / sqrt(2 n_layer)), zero biases, unit layer-norm gains; zero AdamW state, step 0, dropout offset 0.
  void init(std::uint64_t seed);

  // Forward over idx [B, T] (host int32, T <= block_size). With targets (host int32 [B, T]) returns the mean
  // cross-entropy; `training` turns dropout on and keeps what backward() needs (dlogits are fused into the loss).
  // Without targets returns NaN and leaves the logits for last_logits().
  float forward(const std::int32_t* idx, const std::int32_t* targets, int batch, int t, bool training);
  // Gradients of the last training forward into the gradient buffer (overwritten).
  void backward();
  // Clips the gradients to config.grad_clip (returns the norm before clipping) and takes one AdamW step at `lr`.
  float optimizer_step(double lr);
  // The logits [vocab] of position t-1 of batch row 0 of the last forward without targets.
  std::vector<float> last_logits();

  const Config& config() const { return config_; }
  int vocab_size() const { return vocab_; }
  const std::vector<ParamInfo>& params() const { return params_; }
  std::size_t num_params() const { return num_params_; }

  // Host copies of the flat buffers (params, grads, AdamW first and second moments), and setters.
  std::vector<float> get_params() const;
  std::vector<float> get_grads() const;
  void set_params(const std::vector<float>& values);
  std::vector<float> get_adam_m() const;
  std::vector<float> get_adam_v() const;
  void set_adam_state(const std::vector<float>& m, const std::vector<float>& v);

  std::int64_t adam_step = 0;        // AdamW steps taken
  std::uint64_t dropout_offset = 0;  // Philox stream position of the next dropout draw
  std::uint64_t dropout_seed = 0;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Config config_;
  int vocab_;
  std::vector<ParamInfo> params_;
  std::size_t num_params_ = 0;
};

// ----------------------------------------------------------------------------------------------------- training

// The state a checkpoint holds besides the model: enough to continue bitwise identically.
struct TrainState {
  int step = 0;                     // steps completed
  std::uint64_t sampler_state = 0;  // the batch sampler's RNG
  std::vector<int> loss_steps;      // per-step history: step, training loss, learning rate
  std::vector<float> losses, lrs;
  std::vector<int> eval_steps;  // evaluations: step, train loss, val loss
  std::vector<float> eval_train, eval_val;
};

// Checkpoint file: magic, payload (config, data source and hash, vocabulary, step, AdamW step, dropout offset, sampler
// state, params, AdamW moments, loss history) and an FNV-1a 64 checksum of the payload. Written to `path`.tmp,
// fsync'ed and renamed over `path` (then the directory is fsync'ed), so a crash leaves either the old or the new file.
bool save_checkpoint(const std::string& path, const Model& model, const Corpus& corpus, const TrainState& state,
                     std::string* error);

// What load_checkpoint reads back.
struct Checkpoint {
  Config config;
  std::string source;
  std::uint64_t data_hash = 0;
  Tokenizer tokenizer;
  TrainState state;
  std::int64_t adam_step = 0;
  std::uint64_t dropout_offset = 0, dropout_seed = 0;
  std::vector<float> params, adam_m, adam_v;
};
// Reads and verifies (magic, size, checksum) a checkpoint.
bool load_checkpoint(const std::string& path, Checkpoint* checkpoint, std::string* error);
// Puts a checkpoint's parameters, AdamW state and counters into a model of the same shape.
void restore_model(const Checkpoint& checkpoint, Model* model);

// The batch sampler: B random windows of T+1 tokens, from a splitmix64 stream whose state is one integer. `starts`
// as Corpus::train_starts (classes of allowed starts, each start <= data.size() - T - 1), or empty for anywhere.
std::uint64_t splitmix64(std::uint64_t* state);
void sample_batch(const std::vector<std::int32_t>& data, const std::vector<std::vector<std::uint32_t>>& starts,
                  int batch, int t, std::uint64_t* state, std::vector<std::int32_t>* x, std::vector<std::int32_t>* y);

// Mean loss over config.eval_iters batches of `data` (eval mode), batches drawn from a stream seeded by `seed`.
float estimate_loss(Model& model, const std::vector<std::int32_t>& data,
                    const std::vector<std::vector<std::uint32_t>>& starts, std::uint64_t seed);

// Generates `max_new_tokens` continuing `prompt` (ids), cropping the context to block_size. temperature > 0;
// top_k <= 0 keeps every token; top_k == 1 is greedy.
std::vector<std::int32_t> generate(Model& model, std::vector<std::int32_t> prompt, int max_new_tokens,
                                   double temperature, int top_k, std::uint64_t seed);

// Options of a training run (the CLI's flags).
struct TrainOptions {
  Config config;
  std::string source = "fortunes";  // "counting", "fortunes" or a file
  std::string out_dir = "out-gpt";
  dlk_device device = DLK_DEVICE_AUTO;
  int num_threads = 0;
  bool resume = false;
  bool quiet = false;  // no progress lines (tests)
  bool write_plots = true;
  int sample_tokens = 300;             // printed at the end (0: none)
  std::vector<std::string> overrides;  // "key=value" set on the command line (kept on --resume)
};

// Result of train(): the per-step losses of this invocation and where it stopped.
struct TrainResult {
  int first_step = 0, last_step = 0;
  std::vector<float> losses;
  bool interrupted = false;
  int signal_number = 0; // the signal that stopped it (SIGINT, SIGTERM), when interrupted
  std::string checkpoint;
};

// Trains as `dlk train gpt` does. Returns false with *error on a failure. Stops early (saving a checkpoint) when
// request_stop() was called (the CLI's SIGINT/SIGTERM handler does).
bool train(const TrainOptions& options, TrainResult* result, std::string* error);
void request_stop(int signal_number);

// Writes the loss curves (per-step training loss; evaluated train and val loss) as a PNG; false when this build has
// no PNG support (cairo) or the write fails.
bool write_loss_png(const std::string& path, const TrainState& state, std::string* error);
bool write_loss_csv(const std::string& path, const TrainState& state, std::string* error);

// `dlk train gpt ...` and `dlk sample gpt ...`: argv holds the arguments after "gpt". Return the exit status.
int train_cli(int argc, char** argv);
int sample_cli(int argc, char** argv);

}  // namespace gpt
