#!/usr/bin/env python3
"""Times PyTorch on the shapes of bench/bench_softmax.cpp and bench/bench_layernorm.cpp (and the other suites, whose\nsections follow main()), keyed the same way, so
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

        elementwise_cases(torch, F, dev, cuda, dtypes, rand, record, want)  # section "elementwise" below
        optim_cases(torch, dev, cuda, record, want)  # section "optim" below
        loss_cases(torch, F, dev, cuda, dtypes, rand, record, want)  # section "loss" below
        gemm_cases(torch, F, dev, cuda, dtypes, rand, record, want, results)  # section "gemm" below
        batchnorm_cases(torch, F, dev, cuda, dtypes, rand, record, want)  # section "batchnorm" below
        random_cases(torch, F, dev, cuda, dtypes, rand, record, want)  # section "random" below
        attention_cases(torch, F, dev, cuda, dtypes, rand, record, want, results)  # section "attention" below

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


# ------------------------------------------------------------------------------------------------- elementwise
# Keys and shapes of bench/bench_elementwise.cpp: activations forward (F.relu, ...) and backward (the aten kernels
# autograd calls, from the input), add / mul / residual add (y.add_(x)), sum_to_shape (x.sum(0)), and a U-Net skip
# concat / split (split copies, so each piece is made contiguous, as dlk_split writes it).
def elementwise_cases(torch, F, dev, cuda, dtypes, rand, record, want):
    aten = torch.ops.aten
    n = (1 << 24) if cuda else (1 << 22)
    skip = (16, 64, 128, 128) if cuda else (4, 64, 64, 64)
    skip_key = "x".join(map(str, skip))
    acts = {
        "relu": (F.relu, lambda dy, x: aten.threshold_backward(dy, x, 0)),
        "leaky_relu": (F.leaky_relu, lambda dy, x: aten.leaky_relu_backward(dy, x, 0.01, False)),
        "elu": (F.elu, lambda dy, x: aten.elu_backward(dy, 1.0, 1, 1, False, x)),
        "gelu": (F.gelu, lambda dy, x: aten.gelu_backward(dy, x)),
        "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                      lambda dy, x: aten.gelu_backward(dy, x, approximate="tanh")),
        "tanh": (torch.tanh, lambda dy, x: aten.tanh_backward(dy, x)),
        "sigmoid": (torch.sigmoid, lambda dy, x: aten.sigmoid_backward(dy, x)),
        "silu": (F.silu, lambda dy, x: aten.silu_backward(dy, x)),
    }
    with torch.no_grad():
        for dname, dt in dtypes:
            es = torch.finfo(dt).bits // 8
            for name, (fwd, bwd) in acts.items():
                fkey, bkey = f"elementwise/{name}/fwd/{dname}/N{n}", f"elementwise/{name}/bwd/{dname}/N{n}"
                if not want([fkey, bkey]):
                    continue
                sets = rotation_sets(cuda, 3 * n * es)
                xs, dys = [rand((n,), dt) for _ in range(sets)], [rand((n,), dt) for _ in range(sets)]
                record(fkey, 2 * n * es, name, lambda i: fwd(xs[i % sets]), sets)
                record(bkey, 3 * n * es, name + "_backward", lambda i: bwd(dys[i % sets], xs[i % sets]), sets)
                del xs, dys
            rows = (n // 1024, 1024)
            keys = [f"elementwise/add/same/{dname}/N{n}", f"elementwise/add/bias/{dname}/{rows[0]}x1024",
                    f"elementwise/mul/same/{dname}/N{n}", f"elementwise/residual_add/{dname}/N{n}",
                    f"elementwise/sum_to_shape/{dname}/{rows[0]}x1024_to_1024"]
            if want(keys):
                sets = rotation_sets(cuda, 3 * n * es)
                a, b = [rand(rows, dt) for _ in range(sets)], [rand(rows, dt) for _ in range(sets)]
                bias = rand((1024,), dt)
                record(keys[0], 3 * n * es, "torch.add", lambda i: torch.add(a[i % sets], b[i % sets]), sets)
                record(keys[1], (2 * n + 1024) * es, "torch.add(bias)", lambda i: torch.add(a[i % sets], bias), sets)
                record(keys[2], 3 * n * es, "torch.mul", lambda i: torch.mul(a[i % sets], b[i % sets]), sets)
                record(keys[3], 3 * n * es, "Tensor.add_", lambda i: a[i % sets].add_(b[i % sets]), sets)
                record(keys[4], (n + 1024) * es, "Tensor.sum(0)", lambda i: a[i % sets].sum(0), sets)
                del a, b
            ckey, skey = f"elementwise/cat/{dname}/{skip_key}x2_dim1", f"elementwise/split/{dname}/{skip_key}x2_dim1"
            if want([ckey, skey]):
                total = 2 * skip[0] * skip[1] * skip[2] * skip[3]
                sets = rotation_sets(cuda, 2 * total * es)
                p, q = [rand(skip, dt) for _ in range(sets)], [rand(skip, dt) for _ in range(sets)]
                record(ckey, 2 * total * es, "torch.cat", lambda i: torch.cat([p[i % sets], q[i % sets]], 1), sets)
                joined = [torch.cat([p[k], q[k]], 1) for k in range(sets)]
                del p, q
                record(skey, 2 * total * es, "split+contiguous",
                       lambda i: [t.contiguous() for t in joined[i % sets].split(skip[1], 1)], sets)
                del joined


# ------------------------------------------------------------------------------------------------- optim
# Keys and parameter lists of bench/bench_optim.cpp: nanoGPT shakespeare-char (10.7M) and, on cuda, GPT-2 small
# (124.4M), fp32. torch.optim.AdamW / SGD(momentum=0.9) with foreach=True, .step() on parameters whose .grad is set;
# torch.nn.utils.clip_grad_norm_ (1.13 always rescales, by 1.0 when under max_norm); optimizer.zero_grad(False).
def optim_cases(torch, dev, cuda, record, want):
    def gpt(layers, d, vocab, block):
        per_layer = [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
        return [(vocab, d), (block, d)] + per_layer * layers + [(d,), (d,)]

    models = [("nanogpt-10.7M", gpt(6, 384, 65, 256))]
    if cuda:
        models.append(("gpt2-124M", gpt(12, 768, 50257, 1024)))
    for mkey, shapes in models:
        keys = {op: f"optim/{op}/fp32/{mkey}" for op in ("adamw", "sgd_momentum", "clip_grad_norm", "zero_grad")}
        if not want(list(keys.values())):
            continue
        params = [torch.nn.Parameter(torch.rand(s, device=dev) * 8 - 4) for s in shapes]
        for p in params:
            p.grad = torch.rand(p.shape, device=dev) * 8 - 4
        n = sum(p.numel() for p in params)
        adamw = torch.optim.AdamW(params, lr=1e-3, foreach=True)
        adamw.step()  # creates the state outside the timing
        record(keys["adamw"], 28 * n, "torch.optim.AdamW(foreach=True).step", lambda i: adamw.step(), 1)
        del adamw
        sgd = torch.optim.SGD(params, lr=1e-6, momentum=0.9, weight_decay=1e-4, foreach=True)
        sgd.step()
        record(keys["sgd_momentum"], 20 * n, "torch.optim.SGD(momentum, foreach=True).step", lambda i: sgd.step(), 1)
        record(keys["clip_grad_norm"], 4 * n, "torch.nn.utils.clip_grad_norm_",
               lambda i: torch.nn.utils.clip_grad_norm_(params, 1e30), 1)
        record(keys["zero_grad"], 4 * n, "optimizer.zero_grad(set_to_none=False)",
               lambda i: sgd.zero_grad(set_to_none=False), 1)
        del sgd, params


# ------------------------------------------------------------------------------------------------- loss
# Keys and shapes of bench/bench_loss.cpp: cross-entropy over [N, V] logits with int64 targets, V = 65 (nanoGPT
# shakespeare-char) and 50257 (GPT-2), mean reduction. fwdbwd: F.cross_entropy(x, t).backward() on a leaf x (what a
# training step runs; torch materialises log_softmax, so this is its best public spelling); fwd: F.cross_entropy alone.
def loss_cases(torch, F, dev, cuda, dtypes, rand, record, want):
    shapes = [(8192, 65), (8192, 50257)] if cuda else [(8192, 65), (512, 50257)]
    with torch.enable_grad():
        for n, v in shapes:
            for dname, dt in dtypes:
                es = torch.finfo(dt).bits // 8
                fkey, bkey = f"cross_entropy/fwd/{dname}/N{n}xV{v}", f"cross_entropy/fwdbwd/{dname}/N{n}xV{v}"
                if not want([fkey, bkey]):
                    continue
                io = n * v * es
                sets = rotation_sets(cuda, 2 * io)
                xs = [rand((n, v), dt).requires_grad_() for _ in range(sets)]
                t = torch.randint(0, v, (n,), device=dev)

                def fwdbwd(i):
                    x = xs[i % sets]
                    x.grad = None
                    F.cross_entropy(x, t).backward()

                record(bkey, 2 * io + 8 * n + 4, "F.cross_entropy+backward", fwdbwd, sets)
                with torch.no_grad():
                    record(fkey, io + 8 * n + 4, "F.cross_entropy", lambda i: F.cross_entropy(xs[i % sets], t), sets)
                del xs


# ------------------------------------------------------------------------------------------------------- gemm
# Keys and shapes of bench/bench_gemm.cpp: GPT-2 small linear layers (B*T tokens, C = 768) forward as F.linear (plus
# F.gelu(approximate="tanh") for the fused case), backward as the products autograd runs (dx = g @ W,
# dW = g^T @ x, db = g.sum(0), g = aten.gelu_backward(dy, z) with an activation), and the attention scores
# torch.matmul(q, k.transpose(-1, -2)). "tf32" is fp32 with torch.backends.cuda.matmul.allow_tf32. Results also
# carry "flops" and "TFLOPs".
def gemm_cases(torch, F, dev, cuda, dtypes, rand, record, want, results):
    tokens = 8192 if cuda else 1024
    linears = [(768, 2304, "none"), (768, 768, "none"), (768, 3072, "none"), (3072, 768, "none"),
               (768, 2304, "bias"), (768, 3072, "bias_gelu_tanh")]
    ab, at = (8, 1024) if cuda else (1, 256)
    variants = [(d, t, False) for d, t in dtypes] + ([("tf32", torch.float32, True)] if cuda else [])

    def rec(key, bytes_, flops, method, fn, sets):
        n = len(results)
        record(key, bytes_, method, fn, sets)
        if len(results) > n and "us" in results[-1]:
            results[-1]["flops"] = flops
            results[-1]["TFLOPs"] = flops / (results[-1]["us"] * 1e-6) / 1e12

    tf32_before = torch.backends.cuda.matmul.allow_tf32
    try:
        with torch.no_grad():
            for dname, dt, tf32 in variants:
                torch.backends.cuda.matmul.allow_tf32 = tf32
                es = 4 if dt == torch.float32 else 2
                for k, n, act in linears:
                    shape = f"M{tokens}xK{k}xN{n}"
                    fkey, bkey = f"gemm/linear/fwd/{dname}/{act}/{shape}", f"gemm/linear/bwd/{dname}/{act}/{shape}"
                    if not want([fkey, bkey]):
                        continue
                    m = tokens
                    fbytes = (m * k + n * k + m * n * (2 if act == "bias_gelu_tanh" else 1) + n) * es
                    sets = rotation_sets(cuda, fbytes)
                    xs = [rand((m, k), dt) for _ in range(sets)]
                    w, b = rand((n, k), dt, -0.1, 0.1), rand((n,), dt)
                    if act == "none":
                        rec(fkey, fbytes, 2 * m * n * k, "F.linear", lambda i: F.linear(xs[i % sets], w), sets)
                    elif act == "bias":
                        rec(fkey, fbytes, 2 * m * n * k, "F.linear", lambda i: F.linear(xs[i % sets], w, b), sets)
                    else:
                        rec(fkey, fbytes, 2 * m * n * k, "F.gelu(F.linear, tanh)",
                            lambda i: F.gelu(F.linear(xs[i % sets], w, b), approximate="tanh"), sets)
                    if act != "none":
                        bbytes = (2 * m * n + 2 * m * k + 2 * n * k + n) * es
                        dys = [rand((m, n), dt) for _ in range(sets)]
                        zs = [rand((m, n), dt) for _ in range(sets)]

                        def bwd(i, gelu=act == "bias_gelu_tanh"):
                            x, dy = xs[i % sets], dys[i % sets]
                            g = torch.ops.aten.gelu_backward(dy, zs[i % sets], approximate="tanh") if gelu else dy
                            return g @ w, g.t() @ x, g.sum(0)

                        rec(bkey, bbytes, 4 * m * n * k, "matmuls as autograd runs them", bwd, sets)
                        del dys, zs
                    del xs
                key = f"gemm/matmul/{dname}/attn_qk/B{ab}xH12xT{at}xD64"
                if want([key]):
                    bytes_ = ab * 12 * (2 * at * 64 + at * at) * es
                    sets = rotation_sets(cuda, bytes_)
                    qs = [rand((ab, 12, at, 64), dt) for _ in range(sets)]
                    ks = [rand((ab, 12, at, 64), dt) for _ in range(sets)]
                    rec(key, bytes_, 2 * ab * 12 * at * at * 64, "torch.matmul(q, k^T)",
                        lambda i: torch.matmul(qs[i % sets], ks[i % sets].transpose(-1, -2)), sets)
                    del qs, ks
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32_before


# ------------------------------------------------------------------------------------------------- batchnorm
# Keys and shapes of bench/bench_batchnorm.cpp: training-mode batch norm at ResNet-50 stage shapes (batch 32 on cuda,
# 8 on the CPU), fp32 params and statistics. fwd: F.batch_norm(x, rm, rv, w, b, training=True) (updates the running
# stats, as ours); bwd: aten.native_batch_norm_backward from the saved mean/invstd (autograd's kernel); fwdbwd: both.
def batchnorm_cases(torch, F, dev, cuda, dtypes, rand, record, want):
    n = 32 if cuda else 8
    shapes = [(n, 64, 56), (n, 128, 28), (n, 256, 14), (n, 512, 7)]
    bnb = torch.ops.aten.native_batch_norm_backward
    with torch.no_grad():
        for (b, c, hw) in shapes:
            skey = f"N{b}xC{c}xH{hw}xW{hw}"
            for dname, dt in dtypes:
                es = torch.finfo(dt).bits // 8
                keys = {d: f"batchnorm/{d}/{dname}/{skey}" for d in ("fwd", "bwd", "fwdbwd")}
                if not want(list(keys.values())):
                    continue
                numel = b * c * hw * hw
                fwd_bytes, bwd_bytes = 2 * numel * es + 8 * c * 4, 3 * numel * es + 5 * c * 4
                sets = rotation_sets(cuda, fwd_bytes + bwd_bytes)
                xs = [rand((b, c, hw, hw), dt) for _ in range(sets)]
                dys = [rand((b, c, hw, hw), dt) for _ in range(sets)]
                w, bias = rand((c,), torch.float32, 0.5, 1.5), rand((c,), torch.float32, -0.5, 0.5)
                rm, rv = torch.zeros(c, device=dev), torch.ones(c, device=dev)
                saved = [torch.native_batch_norm(x, w, bias, rm, rv, True, 0.1, 1e-5)[1:] for x in xs]

                def fwd(i):
                    return F.batch_norm(xs[i % sets], rm, rv, w, bias, training=True, momentum=0.1, eps=1e-5)

                def bwd(i):
                    sm, si = saved[i % sets]
                    return bnb(dys[i % sets], xs[i % sets], w, rm, rv, sm, si, True, 1e-5, [True, True, True])

                def fwdbwd(i):
                    _, sm, si = torch.native_batch_norm(xs[i % sets], w, bias, rm, rv, True, 0.1, 1e-5)
                    return bnb(dys[i % sets], xs[i % sets], w, rm, rv, sm, si, True, 1e-5, [True, True, True])

                record(keys["fwd"], fwd_bytes, "F.batch_norm(training=True)", fwd, sets)
                record(keys["bwd"], bwd_bytes, "aten.native_batch_norm_backward", bwd, sets)
                record(keys["fwdbwd"], fwd_bytes + bwd_bytes, "native_batch_norm+native_batch_norm_backward", fwdbwd,
                       sets)
                del xs, dys, saved


# ------------------------------------------------------------------------------------------------- random
# Keys and shapes of bench/bench_random.cpp (fp32, and bf16 on cuda): dropout p = 0.1 on GPT-2 small activations
# [B, 1024, 768] (torch.native_dropout, which saves a bool mask like our uint8 one; backward
# aten.native_dropout_backward from the mask), the GPT-2 token table [50257, 768] gathered by B*1024 int64 tokens
# (F.embedding) and its gradient (aten.embedding_dense_backward; bwd_det is the same call: torch has one path), and a
# [3072, 768] weight drawn by nn.Linear's init (kaiming_uniform_(a=sqrt(5))) and by normal_().
def random_cases(torch, F, dev, cuda, dtypes, rand, record, want):
    import math

    b, t, c, vocab = (16 if cuda else 4), 1024, 768, 50257
    for dname, dt in dtypes:
        if dname == "fp16":
            continue
        es = torch.finfo(dt).bits // 8
        n = b * t * c
        dkeys = [f"dropout/{d}/{dname}/B{b}xT{t}xC{c}" for d in ("fwd", "bwd")]
        if want(dkeys):
            x = rand((b, t, c), dt)
            _, mask = torch.native_dropout(x, 0.1, True)
            record(dkeys[0], 2 * n * es + n, "torch.native_dropout", lambda i: torch.native_dropout(x, 0.1, True), 1)
            record(dkeys[1], 2 * n * es + n, "aten.native_dropout_backward",
                   lambda i: torch.ops.aten.native_dropout_backward(x, mask, 1 / 0.9), 1)
            del x, mask
        tokens = b * t
        ekey = f"N{tokens}xV{vocab}xD{c}"
        ekeys = [f"embedding/{d}/{dname}/{ekey}" for d in ("fwd", "bwd", "bwd_det")]
        if want(ekeys):
            w = rand((vocab, c), dt)
            idx = torch.randint(0, vocab, (tokens,), device=dev)
            g = rand((tokens, c), dt)
            record(ekeys[0], tokens * 8 + 2 * tokens * c * es, "F.embedding", lambda i: F.embedding(idx, w), 1)
            bbytes = tokens * 8 + tokens * c * es + vocab * c * es
            for k in ekeys[1:]:
                record(k, bbytes, "aten.embedding_dense_backward",
                       lambda i: torch.ops.aten.embedding_dense_backward(g, idx, vocab, -1, False), 1)
            del w, idx, g
        ikeys = [f"init/{k}/{dname}/O3072xI{c}" for k in ("linear_weight", "normal")]
        if want(ikeys):
            w = torch.empty((3072, c), dtype=dt, device=dev)
            record(ikeys[0], w.numel() * es, "nn.init.kaiming_uniform_(a=sqrt(5))",
                   lambda i: torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5)), 1)
            record(ikeys[1], w.numel() * es, "Tensor.normal_", lambda i: w.normal_(), 1)
            del w



# ------------------------------------------------------------------------------------------------- attention
# Keys and shapes of bench/bench_attention.cpp. fwd: F.scaled_dot_product_attention when torch has it (PyTorch 2:
# flash / memory-efficient backends on cuda; is_causal for causal, a bool [B, 1, 1, T] attn_mask for key padding),
# else the composed softmax(q k^T * scale).masked_fill(...) @ v (torch 1.13, Debian's). bwd: autograd through the
# same call with a fixed dout (the timed call is forward + backward minus the forward's mean time, so both are the
# same kernels a training step runs). TFLOP/s as the C++ suite counts it (causal halved, backward 2.5x).
def attention_shapes(cuda):
    if cuda:
        return [(8, 12, 256, 64), (8, 12, 1024, 64), (12, 12, 1024, 64), (64, 6, 256, 64), (8, 16, 4096, 64),
                (8, 16, 4096, 128), (1, 16, 16384, 128)]
    return [(1, 6, 256, 64), (4, 6, 256, 64), (1, 12, 1024, 64)]


def attention_cases(torch, F, dev, cuda, dtypes, rand, record, want, results):
    import math
    sdpa = getattr(F, "scaled_dot_product_attention", None)

    def flops(b, h, t, d, mask):
        f = 4.0 * b * h * t * t * d
        return f / 2 if mask == "causal" else f

    def attend(q, k, v, mask, pad):
        if sdpa is not None:
            if mask == "causal":
                return sdpa(q, k, v, is_causal=True)
            return sdpa(q, k, v, attn_mask=pad if mask == "keypad" else None)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        if mask == "causal":
            t = q.shape[-2]
            s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
        elif mask == "keypad":
            s = s.masked_fill(~pad, float("-inf"))
        return s.softmax(-1) @ v

    method = "F.scaled_dot_product_attention" if sdpa is not None else "composed softmax(q k^T)v (no SDPA)"
    for (b, h, t, d) in attention_shapes(cuda):
        skey = f"B{b}xH{h}xT{t}xD{d}"
        for dname, dt in dtypes:
            es = torch.finfo(dt).bits // 8
            keys = [f"attention/{dr}/{dname}/{m}/{skey}" for dr in ("fwd", "bwd") for m in ("none", "causal", "keypad")]
            if not want(keys):
                continue
            if sdpa is None and b * h * t * t * es > (2 << 30):
                continue  # the composed version stores [B, H, T, T]
            q, k, v, go = (rand((b, h, t, d), dt, -1.0, 1.0) for _ in range(4))
            lengths = torch.tensor([t // 2 + (i * 7919) % (t // 2 + 1) for i in range(b)], device=dev)
            pad = (torch.arange(t, device=dev).view(1, 1, 1, t) < lengths.view(b, 1, 1, 1))
            io = 4 * b * h * t * d * es + 4 * b * h * t
            for mask in ("none", "causal", "keypad"):
                fkey = f"attention/fwd/{dname}/{mask}/{skey}"
                n = len(results)
                with torch.no_grad():
                    record(fkey, io, method, lambda i: attend(q, k, v, mask, pad), 1)
                fwd_us = results[-1].get("us") if len(results) > n else None
                if fwd_us:
                    results[-1]["flops"] = flops(b, h, t, d, mask)
                    results[-1]["TFLOPs"] = results[-1]["flops"] / (fwd_us * 1e-6) / 1e12
                if mask == "keypad":
                    continue
                bkey = f"attention/bwd/{dname}/{mask}/{skey}"
                qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))

                def fwd_bwd(i):
                    with torch.enable_grad():  # main() runs the sections under no_grad
                        out = attend(qg, kg, vg, mask, pad)
                        return torch.autograd.grad(out, (qg, kg, vg), go)

                n = len(results)
                record(bkey, 2 * io, method + " + autograd (minus the forward)", fwd_bwd, 1)
                if len(results) > n and "us" in results[-1] and fwd_us:
                    r = results[-1]
                    r["us_fwd_bwd"] = r["us"]
                    r["us"] = max(r["us"] - fwd_us, 1e-3)
                    r["GBps"] = r["bytes"] / (r["us"] * 1e-6) / 1e9
                    r["flops"] = 2.5 * flops(b, h, t, d, mask)
                    r["TFLOPs"] = r["flops"] / (r["us"] * 1e-6) / 1e12
                del qg, kg, vg
            del q, k, v, go


if __name__ == "__main__":
    sys.exit(main())
