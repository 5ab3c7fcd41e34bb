// Host-side access to CUDA devices (memory, streams, copies). Compiled by the host compiler; every function has a
// stub when the library is built without CUDA, so a CUDA-enabled library still loads without a driver or GPU.
#pragma once

#include <cstddef>

namespace dlk::device {

bool cuda_built();
int cuda_device_count();  // 0 when not built, no driver, or no GPU; never throws
void set_device(int index);
void* cuda_malloc(std::size_t bytes);
void cuda_free(void* ptr);
void* stream_create();
void stream_destroy(void* stream);
void stream_synchronize(void* stream);
// kind: 0 host->host, 1 host->device, 2 device->host, 3 device->device
void memcpy_async(void* dst, const void* src, std::size_t bytes, int kind, void* stream);
// The device ordinal owning a CUDA pointer, or -1 for host/unknown memory.
int pointer_device(const void* ptr);

}  // namespace dlk::device
