// The boundary of the C ABI. Every entry point body runs inside guard() (no context) or with_context() (locks the
// context and hands the op its Exec): both clear dlk_last_error(), and turn every exception into a dlk_status plus
// a sentence, so no C++ exception, abort or CUDA error ever escapes.
#pragma once

#include <dlk/dlk.h>

#include <new>
#include <string>

#include "runtime/context.h"
#include "runtime/error.h"

namespace dlk {

void set_last_error(const std::string& message);
void clear_last_error();

template <typename Body>
dlk_status guard(const char* op, Body&& body) noexcept {
  clear_last_error();
  try {
    body();
    return DLK_SUCCESS;
  } catch (const Error& e) {
    set_last_error(e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    set_last_error(std::string(op) + ": out of host memory");
    return DLK_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(std::string(op) + ": internal error: " + e.what());
    return DLK_ERROR_INTERNAL;
  } catch (...) {
    set_last_error(std::string(op) + ": internal error: unknown exception");
    return DLK_ERROR_INTERNAL;
  }
}

// Runs body(exec) with the context locked, after checking the handle.
template <typename Body>
dlk_status with_context(const char* op, dlk_context* ctx, Body&& body) noexcept {
  return guard(op, [&] {
    if (!ctx) fail(DLK_ERROR_INVALID_ARGUMENT, op, ": context is NULL");
    std::lock_guard<std::mutex> lock(ctx->mutex);
    body(ctx->exec());
  });
}

}  // namespace dlk
