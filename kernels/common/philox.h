// Philox4x32-10, the counter-based RNG of Random123 (Salmon et al., SC'11) and cuRAND, for host and device code,
// plus the conversions every random op of the library uses. Shared by dropout, init, and (later) attention dropout.
//
// Why counter based: the value at a stream position is a pure function of (seed, position), so any thread on any
// backend computes any element's random bits without state, and cpu, emu and cuda produce bitwise-identical bits.
//
// The stream of a seed: key = {lo32(seed), hi32(seed)}; block g (64-bit) is philox4x32_10(counter, key) with
// counter = {lo32(g), hi32(g), lo32(subsequence), hi32(subsequence)} (cuRAND's layout: words 0-1 the offset, words
// 2-3 the subsequence; the library's ops use subsequence 0). Stream position p is word p % 4 of block p / 4, so the
// 32-bit value at position p is what cuRAND's curand() first returns after curand_init(seed, 0, p).
//
// Offset policy of every op built on it: element i of a call (row-major over the output) uses stream position
// offset + i (normals use the pair of positions around it, see normal_at). A caller that wants fresh randomness on
// every call advances its offset by numel per call (as PyTorch advances its Philox offset), or changes the seed.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace dlk {

struct Philox4 {
  std::uint32_t v[4];
};

DLK_HD std::uint32_t philox_mulhi(std::uint32_t a, std::uint32_t b) {
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(a) * b) >> 32);
}

// The Random123 philox4x32 bijection with 10 rounds: counter c (4 words), key k (2 words).
DLK_HD Philox4 philox4x32_10(Philox4 c, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // multipliers
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const std::uint32_t hi0 = philox_mulhi(kM0, c.v[0]), lo0 = kM0 * c.v[0];
    const std::uint32_t hi1 = philox_mulhi(kM1, c.v[2]), lo1 = kM1 * c.v[2];
    Philox4 o;
    o.v[0] = hi1 ^ c.v[1] ^ k0;
    o.v[1] = lo1;
    o.v[2] = hi0 ^ c.v[3] ^ k1;
    o.v[3] = lo0;
    c = o;
  }
  return c;
}

// Block `block` of the stream of (seed, subsequence): four 32-bit values, positions 4*block .. 4*block+3.
DLK_HD Philox4 philox_block(std::uint64_t seed, std::uint64_t block, std::uint64_t subsequence = 0) {
  Philox4 c;
  c.v[0] = static_cast<std::uint32_t>(block);
  c.v[1] = static_cast<std::uint32_t>(block >> 32);
  c.v[2] = static_cast<std::uint32_t>(subsequence);
  c.v[3] = static_cast<std::uint32_t>(subsequence >> 32);
  return philox4x32_10(c, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// The 32-bit value at stream position p (computes a whole block: kernels that need several consecutive positions
// should call philox_block once and use its four words).
DLK_HD std::uint32_t philox_at(std::uint64_t seed, std::uint64_t p) { return philox_block(seed, p >> 2).v[p & 3]; }

// Uniform float in [0, 1): the top 24 bits times 2^-24 (exact in fp32, 2^24 equally likely values, never 1).
DLK_HD float uniform_co(std::uint32_t x) { return static_cast<float>(x >> 8) * 5.9604644775390625e-8f; }
// Uniform float in (0, 1]: (top 24 bits + 1) * 2^-24 (never 0: safe under log).
DLK_HD float uniform_oc(std::uint32_t x) { return static_cast<float>((x >> 8) + 1u) * 5.9604644775390625e-8f; }

// Box-Muller on one pair of 32-bit values: r = sqrt(-2 ln u1) with u1 = uniform_oc(a) in (0, 1], theta = 2 pi
// uniform_co(b); `second` picks r sin(theta) instead of r cos(theta). fp32 math (logf, sqrtf, cosf, sinf), so values
// agree across backends to a few ulp (bitwise between cpu and emu, which share the host's libm).
DLK_HD float box_muller(std::uint32_t a, std::uint32_t b, bool second) {
  const float r = sqrtf(-2.0f * logf(uniform_oc(a)));
  const float theta = 6.28318530717958647692f * uniform_co(b);
  return second ? r * sinf(theta) : r * cosf(theta);
}

// The standard normal at stream position p, from the block holding p: positions 4g, 4g+1 share the pair (w0, w1)
// (cos and sin), positions 4g+2, 4g+3 the pair (w2, w3).
DLK_HD float normal_in_block(const Philox4& b, unsigned lane) {
  const unsigned pair = lane & 2u;
  return box_muller(b.v[pair], b.v[pair + 1], (lane & 1u) != 0);
}
// All four normals of a block (two Box-Muller pairs, each radius computed once): the values normal_in_block gives.
DLK_HD void normal4_in_block(const Philox4& b, float* out) {
  for (unsigned pair = 0; pair < 4; pair += 2) {
    const float r = sqrtf(-2.0f * logf(uniform_oc(b.v[pair])));
    const float theta = 6.28318530717958647692f * uniform_co(b.v[pair + 1]);
    out[pair] = r * cosf(theta);
    out[pair + 1] = r * sinf(theta);
  }
}
DLK_HD float normal_at(std::uint64_t seed, std::uint64_t p) {
  return normal_in_block(philox_block(seed, p >> 2), static_cast<unsigned>(p & 3));
}

// Inverse error function in fp32 (M. Giles, "Approximating the erfinv function", GPU Computing Gems, 2011; about
// 1e-7 relative error on (-1, 1)), for truncated normals. Written out because host libm has no erfinvf.
// Every multiply-add is an explicit fmaf: whether a compiler contracts `a * b + c` differs between nvcc, the host
// build with -march=x86-64-v3 (the cpu backend) and the plain host build (the emulator), and explicit fmaf makes all
// three round alike.
DLK_HD float erfinv_approx(float x) {
  float w = -logf((1.0f - x) * (1.0f + x));
  float p;
  if (w < 5.0f) {
    w = w - 2.5f;
    p = 2.81022636e-08f;
    p = fmaf(p, w, 3.43273939e-07f);
    p = fmaf(p, w, -3.5233877e-06f);
    p = fmaf(p, w, -4.39150654e-06f);
    p = fmaf(p, w, 0.00021858087f);
    p = fmaf(p, w, -0.00125372503f);
    p = fmaf(p, w, -0.00417768164f);
    p = fmaf(p, w, 0.246640727f);
    p = fmaf(p, w, 1.50140941f);
  } else {
    w = sqrtf(w) - 3.0f;
    p = -0.000200214257f;
    p = fmaf(p, w, 0.000100950558f);
    p = fmaf(p, w, 0.00134934322f);
    p = fmaf(p, w, -0.00367342844f);
    p = fmaf(p, w, 0.00573950773f);
    p = fmaf(p, w, -0.0076224613f);
    p = fmaf(p, w, 0.00943887047f);
    p = fmaf(p, w, 1.00167406f);
    p = fmaf(p, w, 2.83297682f);
  }
  return p * x;
}

}  // namespace dlk
