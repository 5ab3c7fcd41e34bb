/* Compiles the public header as strict C99 and makes a few calls through it, as a C user would. */
#include <dlk/dlk.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  dlk_context_options opts;
  dlk_context* ctx = NULL;
  float data[3] = {4.3f, 6.1f, 2.3f};
  int64_t shape[1] = {3};
  DLTensor x;
  dlk_status s;
  if (dlk_version() != DLK_VERSION) return 1;
  if (strcmp(dlk_status_string(DLK_ERROR_SHAPE), "DLK_ERROR_SHAPE") != 0) return 2;
  dlk_context_options_init(&opts);
  opts.device = DLK_DEVICE_CPU;
  if (dlk_context_create(&opts, &ctx) != DLK_SUCCESS) return 3;
  memset(&x, 0, sizeof(x));
  x.data = data;
  x.device.device_type = kDLCPU;
  x.ndim = 1;
  x.shape = shape;
  x.dtype.code = kDLFloat;
  x.dtype.bits = 32;
  x.dtype.lanes = 1;
  s = dlk_softmax_forward(ctx, NULL, &x, &x);
  if (s != DLK_SUCCESS) {
    printf("%s: %s\n", dlk_status_string(s), dlk_last_error());
    return 4;
  }
  printf("softmax([4.3, 6.1, 2.3]) = [%.4f, %.4f, %.4f]\n", data[0], data[1], data[2]);
  s = dlk_softmax_forward(ctx, NULL, NULL, &x);
  if (s != DLK_ERROR_INVALID_ARGUMENT || strlen(dlk_last_error()) == 0) return 5;
  dlk_context_destroy(ctx);
  return (data[1] > 0.841f && data[1] < 0.843f) ? 0 : 6;
}
