#!/usr/bin/env python3
"""Times PyTorch on the shapes of bench/bench_softmax.cpp and bench/bench_layernorm.cpp, keyed the same way, so
tools/bench_report.py can put dlkernels and PyTorch side by side.

    /usr/bin/python3 bench/compare_torch.py --device cpu  --out torch_cpu.json
    python3 bench/compare_torch.py --device cuda --out torch_cuda.json     # CUDA events, fp32/fp16/bf16

What is timed, as a PyTorch user would write it:
  softmax fwd   none: torch.softmax(x, -1); causal / keypad: x.masked_fill(mask, -inf).softmax(-1) with the bool
                mask built once (PyTorch has no fused masked softmax in its public API, so the mask is a second pass)
  softmax bwd   torch._softmax_backward_data(dy, y, -1, dtype), the kernel autograd calls (dx from the saved y)
  layernorm fwd F.layer_norm(x, [C], w, b) (ATen's native_layer_norm, which also computes mean and rstd)
  layernorm bwd torch.ops.aten.native_layer_norm_backward(dy, x, [C], mean, rstd, w, b, [True]*3), autograd's kernel
Bytes that must move are counted exactly as the C++ suites count them (inputs read once, outputs written once),
so GB/s compare directly. Timing mirrors bench/bench_common.h: on the CPU the mean wall time of calls over
>= 0.1 s after 3 warm-ups, with torch using as many threads as the process may run on (OpenMP's default for
dlkernels); on cuda 20 event-timed batches of ~2 ms each after warm-up, rotating buffer sets so that one pass
touches >= 256 MiB (the L2 is no help). Keep the shape lists in step with the C++ suites.
"""
import argparse
import datetime
import json
import os
import platform
import re
import sys
import time


def softmax_shapes(cuda):
    gpt = lambda b, h, t: (b, h, t, t, f"B{b}xH{h}xT{t}")  # noqa: E731
    if cuda:
        return [gpt(8, 12, 256), gpt(8, 12, 1024), gpt(4, 16, 2048), gpt(12, 12, 1024), gpt(64, 6, 256),
                (1, 1, 1024, 65536, "R1024xC65536")]
    return [gpt(1, 12, 256), gpt(4, 6, 256), gpt(1, 12, 1024)]


def layernorm_shapes(cuda):
    out = []
    for b in ([8, 16] if cuda else [1, 4]):
        for c in [384, 768, 1024, 1600, 2048, 4096]:
            out.append((b, 1024, c, f"B{b}xT1024xC{c}"))
    return out


def rotation_sets(cuda, bytes_per_set):
    if not cuda or bytes_per_set <= 0:
        return 1
    return int(min(8, max(1, (256 << 20) // int(bytes_per_set) + 1)))


class Timer:
    def __init__(self, torch, device, repetitions):
        self.torch = torch
        self.cuda = device == "cuda"
        self.repetitions = max(1, repetitions)

    def run(self, call):
        """Mean seconds per call(i); call(i) uses buffer set i % sets."""
        torch = self.torch
        i = 0
        for _ in range(3):
            call(i)
            i += 1
        if not self.cuda:
            # As Google Benchmark with --benchmark_repetitions=N: the median over repetitions of the mean per call.
            means, times = [], []
            for _ in range(self.repetitions):
                rep = []
                t_end = time.perf_counter() + 0.1
                while len(rep) < 3 or time.perf_counter() < t_end:
                    t0 = time.perf_counter()
                    call(i)
                    rep.append(time.perf_counter() - t0)
                    i += 1
                means.append(sum(rep) / len(rep))
                times += rep
            means.sort()
            times.sort()
            return means[len(means) // 2], times[len(times) // 2]
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def batch(n):
            nonlocal i
            start.record()
            for _ in range(n):
                call(i)
                i += 1
            stop.record()
            torch.cuda.synchronize()
            return start.elapsed_time(stop) * 1e-3

        torch.cuda.synchronize()
        probe = batch(5) / 5
        per_batch = int(min(2000, max(5, 2e-3 / max(probe, 1e-7))))
        per_launch = sorted(batch(per_batch) / per_batch for _ in range(20))
        return sum(per_launch) / len(per_launch), per_launch[len(per_launch) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--out", help="JSON file to write")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default: the CPUs this process may run on)")
    ap.add_argument("--repetitions", type=int, default=1,
                    help="cpu: repeat each case N times and keep the median of the means (as --benchmark_repetitions)")
    ap.add_argument("--filter", default="", help="regex on the case key, as --benchmark_filter")
    args = ap.parse_args()

    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"compare_torch: torch unavailable ({e})", file=sys.stderr)
        return 3
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("compare_torch: torch unavailable: torch has no usable CUDA device", file=sys.stderr)
        return 3
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    dev = torch.device(args.device)
    dtypes = [("fp32", torch.float32)] + ([("fp16", torch.float16), ("bf16", torch.bfloat16)] if cuda else [])
    timer = Timer(torch, args.device, args.repetitions)
    flt = re.compile(args.filter) if args.filter else None
    torch.manual_seed(0)

    def rand(shape, dt, lo=-4.0, hi=4.0):  # generated where it lives: gigabytes on the host would take seconds
        return (torch.rand(shape, device=dev) * (hi - lo) + lo).to(dtype=dt)

    results = []

    def record(key, bytes_, method, fn, sets):
        if flt and not flt.search(key):
            return
        try:
            mean_s, median_s = timer.run(fn)
            results.append({"key": key, "impl": "torch", "us": mean_s * 1e6, "us_median": median_s * 1e6,
                            "bytes": bytes_, "GBps": bytes_ / mean_s / 1e9, "method": method, "sets": sets})
            print(f"{key:48s} {mean_s * 1e6:12.1f} us {bytes_ / mean_s / 1e9:9.2f} GB/s  ({method})", flush=True)
        except Exception as e:  # noqa: BLE001  (e.g. out of memory: report and go on)
            results.append({"key": key, "impl": "torch", "error": f"{type(e).__name__}: {e}"})
            print(f"{key:48s} ERROR {type(e).__name__}: {e}", flush=True)
        if cuda:
            torch.cuda.empty_cache()

    def want(prefix_re):
        return not flt or any(flt.search(k) for k in prefix_re)

    softmax_bwd = getattr(torch, "_softmax_backward_data", None)

    with torch.no_grad():
        for (b, h, r, c, skey) in softmax_shapes(cuda):
            for dname, dt in dtypes:
                es = torch.finfo(dt).bits // 8
                io = b * h * r * c * es
                keys = {m: f"softmax/fwd/{dname}/{m}/{skey}" for m in ("none", "causal", "keypad")}
                bkey = f"softmax/bwd/{dname}/none/{skey}"
                if not want(list(keys.values()) + [bkey]):
                    continue
                sets = rotation_sets(cuda, 2 * io)
                xs = [rand((b, h, r, c), dt) for _ in range(sets)]
                record(keys["none"], 2 * io, "torch.softmax", lambda i: torch.softmax(xs[i % sets], -1), sets)
                if r == c:
                    causal = torch.ones(r, c, dtype=torch.bool, device=dev).triu(1)
                    record(keys["causal"], 2 * io, "masked_fill(triu)+softmax",
                           lambda i: xs[i % sets].masked_fill(causal, float("-inf")).softmax(-1), sets)
                    lengths = torch.tensor([c // 2 + (i * 7919) % (c // 2 + 1) for i in range(b)], device=dev)
                    pad = (torch.arange(c, device=dev)[None, :] >= lengths[:, None]).view(b, 1, 1, c)
                    record(keys["keypad"], 2 * io + 4 * b, "masked_fill(keypad)+softmax",
                           lambda i: xs[i % sets].masked_fill(pad, float("-inf")).softmax(-1), sets)
                del xs
                sets = rotation_sets(cuda, 3 * io)
                ys = [rand((b, h, r, c), dt) for _ in range(sets)]
                dys = [rand((b, h, r, c), dt) for _ in range(sets)]
                if softmax_bwd is not None:
                    method, fn = "torch._softmax_backward_data", lambda i: softmax_bwd(dys[i % sets], ys[i % sets], -1, dt)
                    try:
                        fn(0)
                    except TypeError:  # older signature: (grad, output, dim, input)
                        fn = lambda i: softmax_bwd(dys[i % sets], ys[i % sets], -1, ys[i % sets])  # noqa: E731
                else:
                    method = "autograd"

                    def fn(i):
                        with torch.enable_grad():
                            x = ys[i % sets].detach().requires_grad_()
                            torch.softmax(x, -1).backward(dys[i % sets])
                record(bkey, 3 * io, method, fn, sets)
                del ys, dys

        for (b, t, c, skey) in layernorm_shapes(cuda):
            for dname, dt in dtypes:
                es = torch.finfo(dt).bits // 8
                rows = b * t
                fkey, bkey = f"layernorm/fwd/{dname}/{skey}", f"layernorm/bwd/{dname}/{skey}"
                if not want([fkey, bkey]):
                    continue
                fbytes = 2 * rows * c * es + 2 * c * es + 2 * rows * 4
                bbytes = 3 * rows * c * es + 2 * rows * 4 + 3 * c * es
                sets = rotation_sets(cuda, fbytes)
                xs = [rand((b, t, c), dt) for _ in range(sets)]
                w, bias = rand((c,), dt, 0.5, 1.5), rand((c,), dt, -0.5, 0.5)
                record(fkey, fbytes, "F.layer_norm", lambda i: F.layer_norm(xs[i % sets], (c,), w, bias), sets)
                del xs
                sets = rotation_sets(cuda, bbytes)
                xs = [rand((b, t, c), dt) for _ in range(sets)]
                dys = [rand((b, t, c), dt) for _ in range(sets)]
                stats = [torch.native_layer_norm(x, (c,), w, bias, 1e-5)[1:] for x in xs]
                lnb = torch.ops.aten.native_layer_norm_backward
                record(bkey, bbytes, "aten.native_layer_norm_backward",
                       lambda i: lnb(dys[i % sets], xs[i % sets], (c,), stats[i % sets][0], stats[i % sets][1], w,
                                     bias, [True, True, True]), sets)
                del xs, dys, stats

    info = {
        "tool": "compare_torch",
        "device": args.device,
        "date": datetime.date.today().isoformat(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "blas": next((l.strip() for l in torch.__config__.show().splitlines() if "BLAS" in l), None),
        "timing": ("cuda events, 20 batches of ~2 ms, mean per call" if cuda
                   else f"wall clock, mean per call over >= 0.1 s after 3 warm-ups, median of "
                        f"{timer.repetitions} repetitions"),
    }
    if cuda:
        info["gpu_name"] = torch.cuda.get_device_name(0)
    out = dict(info, results=results)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    errors = sum(1 for r in results if "error" in r)
    print(f"compare_torch: {len(results)} cases, {errors} errors, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads" + (f" -> {args.out}" if args.out else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
