// Configurations, the character tokenizer and the corpora (generated, a user's file, Debian's fortunes).
#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "gpt.h"

namespace gpt {

// ------------------------------------------------------------------------------------------------ configuration

bool config_preset(const std::string& name, Config* c) {
  Config d;
  if (name == "nanogpt") {
    // nanoGPT's config/train_shakespeare_char.py
    d.n_layer = 6, d.n_head = 6, d.n_embd = 384, d.block_size = 256, d.batch_size = 64, d.dropout = 0.2;
    d.lr = 1e-3 * 0.3, d.min_lr = 3e-5, d.max_iters = 5000, d.lr_decay_iters = 5000, d.warmup_iters = 100;
    d.eval_interval = 250, d.eval_iters = 200, d.log_interval = 10, d.ckpt_interval = 250;
    d.beta2 = 0.99, d.weight_decay = 0.1;
  } else if (name == "small") {
    // Fits 2 CPU cores: about 0.8M parameters, 1024 tokens a step.
    d.n_layer = 4, d.n_head = 4, d.n_embd = 128, d.block_size = 64, d.batch_size = 16, d.dropout = 0.0;
    d.lr = 2e-3, d.min_lr = 2e-4, d.max_iters = 1500, d.lr_decay_iters = 0, d.warmup_iters = 50;
    d.eval_interval = 250, d.eval_iters = 20, d.log_interval = 25, d.ckpt_interval = 250;
    d.beta2 = 0.99, d.weight_decay = 0.1;
  } else {
    return false;
  }
  *c = d;
  return true;
}

namespace {

template <typename V>
bool parse_number(const std::string& s, V* out) {
  std::istringstream in(s);
  V v;
  in >> v;
  if (in.fail() || !in.eof()) return false;
  *out = v;
  return true;
}

struct Field {
  const char* name;
  int Config::*i;
  double Config::*d;
  std::uint64_t Config::*u;
};

const Field kFields[] = {
    {"n_layer", &Config::n_layer, nullptr, nullptr},
    {"n_head", &Config::n_head, nullptr, nullptr},
    {"n_embd", &Config::n_embd, nullptr, nullptr},
    {"block_size", &Config::block_size, nullptr, nullptr},
    {"batch_size", &Config::batch_size, nullptr, nullptr},
    {"dropout", nullptr, &Config::dropout, nullptr},
    {"lr", nullptr, &Config::lr, nullptr},
    {"min_lr", nullptr, &Config::min_lr, nullptr},
    {"weight_decay", nullptr, &Config::weight_decay, nullptr},
    {"beta1", nullptr, &Config::beta1, nullptr},
    {"beta2", nullptr, &Config::beta2, nullptr},
    {"grad_clip", nullptr, &Config::grad_clip, nullptr},
    {"max_iters", &Config::max_iters, nullptr, nullptr},
    {"warmup_iters", &Config::warmup_iters, nullptr, nullptr},
    {"lr_decay_iters", &Config::lr_decay_iters, nullptr, nullptr},
    {"eval_interval", &Config::eval_interval, nullptr, nullptr},
    {"eval_iters", &Config::eval_iters, nullptr, nullptr},
    {"log_interval", &Config::log_interval, nullptr, nullptr},
    {"ckpt_interval", &Config::ckpt_interval, nullptr, nullptr},
    {"seed", nullptr, nullptr, &Config::seed},
};

}  // namespace

bool config_set(Config* c, const std::string& key_in, const std::string& value, std::string* error) {
  std::string key = key_in;
  std::replace(key.begin(), key.end(), '-', '_');
  for (const auto& f : kFields) {
    if (key != f.name) continue;
    bool ok = f.i   ? parse_number(value, &(c->*f.i))
              : f.d ? parse_number(value, &(c->*f.d))
                    : parse_number(value, &(c->*f.u));
    if (f.d && ok && !std::isfinite(c->*f.d)) ok = false;
    if (!ok) *error = "config: " + key + " needs a number, got '" + value + "'";
    return ok;
  }
  *error = "config: unknown field '" + key_in + "'";
  return false;
}

std::string config_to_text(const Config& c) {
  std::ostringstream out;
  out.precision(17);
  for (const auto& f : kFields) {
    out << f.name << '=';
    if (f.i)
      out << c.*f.i;
    else if (f.d)
      out << c.*f.d;
    else
      out << c.*f.u;
    out << '\n';
  }
  return out.str();
}

bool config_validate(const Config& c, std::string* error) {
  auto fail = [&](const std::string& m) {
    *error = "config: " + m;
    return false;
  };
  if (c.n_layer < 1 || c.n_head < 1 || c.n_embd < 1 || c.block_size < 1 || c.batch_size < 1)
    return fail("n_layer, n_head, n_embd, block_size and batch_size must be >= 1");
  if (c.n_embd % c.n_head != 0)
    return fail("n_embd " + std::to_string(c.n_embd) + " is not divisible by n_head " + std::to_string(c.n_head));
  if (c.n_embd / c.n_head > 256) return fail("head size n_embd/n_head must be <= 256 (the attention kernels' limit)");
  if (!(c.dropout >= 0 && c.dropout < 1)) return fail("dropout must be in [0, 1)");
  if (!(c.lr >= 0) || !(c.min_lr >= 0) || !(c.weight_decay >= 0) || !(c.grad_clip >= 0))
    return fail("lr, min_lr, weight_decay and grad_clip must be >= 0");
  if (!(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1)) return fail("beta1, beta2 must be in [0, 1)");
  if (c.max_iters < 0 || c.warmup_iters < 0 || c.lr_decay_iters < 0 || c.eval_interval < 0 || c.eval_iters < 1 ||
      c.log_interval < 1 || c.ckpt_interval < 0)
    return fail("iteration counts must be >= 0 (eval_iters and log_interval >= 1)");
  return true;
}

double learning_rate(const Config& c, int it) {
  const int decay_iters = c.lr_decay_iters > 0 ? c.lr_decay_iters : c.max_iters;
  if (it < c.warmup_iters) return c.lr * (it + 1) / (c.warmup_iters + 1);
  if (it > decay_iters || decay_iters <= c.warmup_iters) return c.min_lr;
  const double ratio = static_cast<double>(it - c.warmup_iters) / (decay_iters - c.warmup_iters);
  const double coeff = 0.5 * (1.0 + std::cos(M_PI * ratio));
  return c.min_lr + coeff * (c.lr - c.min_lr);
}

// ------------------------------------------------------------------------------------------------------- UTF-8

bool utf8_decode(const std::string& bytes, std::u32string* out, std::string* error) {
  out->clear();
  out->reserve(bytes.size());
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  for (std::size_t i = 0; i < n;) {
    unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = len > 0 && i + static_cast<std::size_t>(len) <= n;
    for (int k = 1; ok && k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // overlong forms, surrogates and values past U+10FFFF are not UTF-8
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF))
      ok = false;
    if (!ok) {
      *error = "not valid UTF-8 at byte " + std::to_string(i);
      return false;
    }
    out->push_back(cp);
    i += static_cast<std::size_t>(len);
  }
  return true;
}

std::string utf8_encode(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

// --------------------------------------------------------------------------------------------------- tokenizer

Tokenizer Tokenizer::from_text(const std::u32string& text) {
  // the Basic Multilingual Plane through a bitmap (one pass over megabytes of text), the rest sorted
  std::vector<bool> seen(0x10000, false);
  std::vector<char32_t> astral;
  for (char32_t c : text) {
    if (c < 0x10000)
      seen[c] = true;
    else
      astral.push_back(c);
  }
  Tokenizer t;
  for (char32_t c = 0; c < 0x10000; ++c)
    if (seen[c]) t.symbols.push_back(c);
  std::sort(astral.begin(), astral.end());
  astral.erase(std::unique(astral.begin(), astral.end()), astral.end());
  t.symbols.insert(t.symbols.end(), astral.begin(), astral.end());
  return t;
}

bool Tokenizer::encode(const std::u32string& text, std::vector<std::int32_t>* ids, std::string* error) const {
  ids->clear();
  ids->reserve(text.size());
  // ASCII (nearly every character of a typical corpus) through a table, the rest by binary search.
  std::int32_t ascii[128];
  for (auto& a : ascii) a = -1;
  for (std::size_t i = 0; i < symbols.size(); ++i)
    if (symbols[i] < 128) ascii[symbols[i]] = static_cast<std::int32_t>(i);
  for (char32_t c : text) {
    std::int32_t id = -1;
    if (c < 128) {
      id = ascii[c];
    } else {
      auto it = std::lower_bound(symbols.begin(), symbols.end(), c);
      if (it != symbols.end() && *it == c) id = static_cast<std::int32_t>(it - symbols.begin());
    }
    if (id < 0) {
      *error = "character '" + utf8_encode(std::u32string(1, c)) + "' (U+" + [&] {
        char b[16];
        std::snprintf(b, sizeof b, "%04X", static_cast<unsigned>(c));
        return std::string(b);
      }() + ") is not in the model's vocabulary";
      return false;
    }
    ids->push_back(id);
  }
  return true;
}

std::u32string Tokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::u32string out;
  out.reserve(ids.size());
  for (auto id : ids)
    if (id >= 0 && static_cast<std::size_t>(id) < symbols.size()) out.push_back(symbols[static_cast<std::size_t>(id)]);
  return out;
}

// ----------------------------------------------------------------------------------------------------- corpora

std::string counting_text(int last) {
  std::string s;
  s.reserve(static_cast<std::size_t>(last) * 7 + 16);
  for (int i = 0; i <= last; ++i) {
    if (i) s += ',';
    s += std::to_string(i);
  }
  return s;
}

namespace {
const char* kFortuneDir = "/usr/share/games/fortunes";

bool read_file(const std::string& path, std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot open " + path;
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}
}  // namespace

bool fortunes_text(std::string* text, std::string* error) {
  DIR* dir = opendir(kFortuneDir);
  if (!dir) {
    *error = std::string("the default corpus needs Debian's fortunes package (") + kFortuneDir +
             " is missing): apt-get install fortunes, or pass --data FILE or --task counting";
    return false;
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(dir)) {
    std::string n = e->d_name;
    if (n.empty() || n[0] == '.' || n.find('.') != std::string::npos) continue;  // skip .dat indexes and .u8 links
    names.push_back(n);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  text->clear();
  for (const auto& n : names) {
    std::string part;
    if (!read_file(std::string(kFortuneDir) + "/" + n, &part, error)) return false;
    *text += part;
  }
  if (text->empty()) {
    *error = std::string("no fortune databases in ") + kFortuneDir;
    return false;
  }
  return true;
}

bool make_corpus(const std::string& source, const std::string& utf8, Corpus* corpus, std::string* error) {
  std::u32string text;
  if (!utf8_decode(utf8, &text, error)) {
    *error = source + ": " + *error;
    return false;
  }
  if (text.size() < 100) {
    *error = source + ": needs at least 100 characters, has " + std::to_string(text.size());
    return false;
  }
  corpus->source = source;
  corpus->tokenizer = Tokenizer::from_text(text);
  std::vector<std::int32_t> ids;
  if (!corpus->tokenizer.encode(text, &ids, error)) return false;
  std::uint64_t h = 1469598103934665603ULL;
  for (auto id : ids) h = (h ^ static_cast<std::uint32_t>(id)) * 1099511628211ULL;
  corpus->hash = h;
  const std::size_t n_train = ids.size() * 9 / 10;
  corpus->train.assign(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n_train));
  corpus->val.assign(ids.begin() + static_cast<std::ptrdiff_t>(n_train), ids.end());
  return true;
}

bool load_corpus(const std::string& source, Corpus* corpus, std::string* error) {
  std::string text;
  if (source == "counting") {
    text = counting_text();
  } else if (source == "fortunes") {
    if (!fortunes_text(&text, error)) return false;
  } else if (!read_file(source, &text, error)) {
    return false;
  }
  if (!make_corpus(source, text, corpus, error)) return false;
  if (source == "counting") {
    // number starts by digit count (class d-1 holds the d-digit numbers), each split on its own
    const std::int32_t comma = 0;  // ',' sorts before the digits
    for (auto [data, starts] :
         {std::make_pair(&corpus->train, &corpus->train_starts), std::make_pair(&corpus->val, &corpus->val_starts)}) {
      starts->assign(6, {});
      const std::size_t limit = data->size() > 1025 ? data->size() - 1025 : 0;  // room for block_size <= 1024
      std::size_t i = 0;
      while (i < limit) {
        std::size_t j = i;
        while (j < data->size() && (*data)[j] != comma) ++j;
        std::size_t digits = j - i;
        if (i == 0 && data == &corpus->val) digits = 0;  // the val split starts mid-number
        if (digits >= 1 && digits <= 6) (*starts)[digits - 1].push_back(static_cast<std::uint32_t>(i));
        i = j + 1;
      }
      starts->erase(std::remove_if(starts->begin(), starts->end(), [](const auto& c) { return c.empty(); }),
                    starts->end());
    }
  }
  return true;
}

}  // namespace gpt
