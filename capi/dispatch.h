// One switch from a validated call to the backend that runs it. Backends not compiled in are reported, not linked.
#pragma once

#include "runtime/error.h"
#include "runtime/exec.h"

#ifdef DLK_HAVE_CUDA
#define DLK_CALL_CUDA_(fn, args, exec) ::dlk::cuda::fn(args, exec)
#else
#define DLK_CALL_CUDA_(fn, args, exec) ::dlk::fail(DLK_ERROR_NOT_AVAILABLE, #fn ": built without CUDA")
#endif
#ifdef DLK_HAVE_EMU
#define DLK_CALL_EMU_(fn, args, exec) ::dlk::emu::fn(args, exec)
#else
#define DLK_CALL_EMU_(fn, args, exec) ::dlk::fail(DLK_ERROR_NOT_AVAILABLE, #fn ": built without the emulator")
#endif

// DLK_DISPATCH(softmax_forward, args, exec) calls dlk::{cpu,cuda,emu}::softmax_forward(args, exec).
#define DLK_DISPATCH(fn, args, exec)                                    \
  do {                                                                  \
    switch ((exec).backend) {                                           \
      case ::dlk::Backend::Cpu: ::dlk::cpu::fn(args, exec); break;      \
      case ::dlk::Backend::Cuda: DLK_CALL_CUDA_(fn, args, exec); break; \
      case ::dlk::Backend::Emu: DLK_CALL_EMU_(fn, args, exec); break;   \
    }                                                                   \
  } while (0)
