// What an op implementation receives besides its arguments: where to run and how. Shared by the cpu, emu and cuda
// builds, so it holds no CUDA types.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dlk {

enum class Backend : int { Cpu = 1, Cuda = 2, Emu = 3 };

struct Exec {
  Backend backend = Backend::Cpu;
  void* stream = nullptr;      // cudaStream_t for cuda; unused elsewhere
  int device_index = 0;
  bool deterministic = false;
  int num_threads = 0;         // 0: OpenMP default
  std::uint64_t seed = 0;
  // Scratch memory on the backend's device, valid until the next call on the same context. Never freed by ops.
  void* (*workspace_fn)(void* owner, std::size_t bytes) = nullptr;
  void* workspace_owner = nullptr;
  void* workspace(std::size_t bytes) const { return workspace_fn(workspace_owner, bytes); }
  // The context's BLAS library handle (cuBLAS on cuda): null until the first op that needs it creates it and stores
  // it here together with the function that destroys it; the context destroys it when it is destroyed.
  void** blas_handle = nullptr;
  void (**blas_handle_destroy)(void*) = nullptr;
};

}  // namespace dlk
