// Tiny portability macros shared by host-only, emulated and nvcc-compiled code.
#pragma once

#if defined(__CUDACC__)
#define DLK_HD __host__ __device__ __forceinline__
#else
#define DLK_HD inline
#endif
