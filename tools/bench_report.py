#!/usr/bin/env python3
"""Merges benchmark JSONs into one table and one summary JSON (standard library only).

    tools/bench_report.py [--stages stages.tsv] [--out summary.json] [--markdown] [--title T] FILE.json...

Inputs, recognised by content:
  - Google Benchmark JSON from bench_softmax / bench_layernorm (--benchmark_format=json or --benchmark_out=...):
    cases are named "<key>/<impl>" (impl: dlk, naive, cudnn), e.g. softmax/fwd/fp16/causal/B8xH12xT1024/dlk;
  - bench/compare_torch.py JSON: the same keys, impl "torch";
  - --stages: tab-separated lines "stage<TAB>pass|fail|skip<TAB>detail" (tools/gpu-check writes them).
Per key it shows dlkernels' time, GB/s and % of copy bandwidth (cuda), and each baseline's time over dlkernels'
time: above 1 means dlkernels is faster. Used by tools/gpu-check on a GPU and by hand for the CPU numbers.
"""
import argparse
import json
import math
import os
import re
import sys

UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
BASELINES = ["torch", "cudnn", "naive"]


def strip_name(name):
    """'softmax/fwd/.../dlk/min_time:0.100/real_time' -> (key, impl)."""
    parts = [p for p in name.split("/") if ":" not in p and p not in ("real_time", "manual_time", "process_time")]
    return "/".join(parts[:-1]), parts[-1]


def load(paths):
    rows, contexts, torch_info, problems = {}, [], [], []
    for path in paths:
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            problems.append(f"{path}: {e}")
            continue
        if isinstance(d, dict) and "benchmarks" in d:
            ctx = {k: v for k, v in d.get("context", {}).items() if k != "host_name"}  # results are committed
            contexts.append(dict(ctx, file=os.path.basename(path)))
            have_median = {b.get("run_name") for b in d["benchmarks"] if b.get("aggregate_name") == "median"}
            for b in d["benchmarks"]:
                if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                    continue
                if b.get("run_type") != "aggregate" and b.get("run_name") in have_median:
                    continue  # repetitions: the median stands for them
                key, impl = strip_name(b.get("run_name") or b["name"])
                ent = {"source": os.path.basename(path)}
                if b.get("error_occurred"):
                    ent["error"] = b.get("error_message", "error")
                else:
                    ent["us"] = b["real_time"] * UNIT_US.get(b.get("time_unit", "ns"), 1e-3)
                    for c in ("GB/s", "pct_copy_bw", "bytes", "launches_per_iter", "TFLOP/s"):
                        if c in b:
                            ent[{"GB/s": "GBps", "TFLOP/s": "TFLOPs"}.get(c, c)] = b[c]
                rows.setdefault(key, {})[impl] = ent
        elif isinstance(d, dict) and d.get("tool") == "compare_torch":
            torch_info.append({k: v for k, v in d.items() if k != "results"} | {"file": os.path.basename(path)})
            for r in d.get("results", []):
                ent = {k: r[k] for k in ("us", "GBps", "TFLOPs", "bytes", "method", "error") if k in r}
                ent["source"] = os.path.basename(path)
                rows.setdefault(r["key"], {})["torch"] = ent
        else:
            problems.append(f"{path}: neither Google Benchmark nor compare_torch JSON")
    return rows, contexts, torch_info, problems


def load_stages(path):
    stages = []
    if not path:
        return stages
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    name, status, detail = (line.rstrip("\n").split("\t") + ["", ""])[:3]
                    stages.append({"stage": name, "status": status, "detail": detail})
    except OSError as e:
        stages.append({"stage": "stages-file", "status": "fail", "detail": str(e)})
    return stages


def fmt(v, spec, width):
    return f"{v:{width}{spec}}" if isinstance(v, (int, float)) else f"{v if v is not None else '-':>{width}}"


def ratio(rowd, impl):
    base, dlk = rowd.get(impl, {}), rowd.get("dlk", {})
    if "us" in base and dlk.get("us"):
        return base["us"] / dlk["us"]
    return None


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--stages")
    ap.add_argument("--out")
    ap.add_argument("--title", default="dlkernels benchmark report")
    ap.add_argument("--note", default="", help="free text kept in the summary JSON (machine, conditions)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    args = ap.parse_args()

    rows, contexts, torch_info, problems = load(args.files)
    stages = load_stages(args.stages)
    present = [b for b in BASELINES if any(b in r for r in rows.values())]
    has_pct = any("pct_copy_bw" in r.get("dlk", {}) for r in rows.values())
    has_tflops = any("TFLOPs" in r.get("dlk", {}) for r in rows.values())  # compute-bound suites (attention)

    table = []
    natural = lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]  # noqa: E731  C384 < C1024
    for key in sorted(rows, key=natural):
        r = rows[key]
        parts = key.split("/")
        entry = {"key": key, "op": parts[0], "dir": parts[1] if len(parts) > 1 else "",
                 "dtype": parts[2] if len(parts) > 2 else "", "shape": parts[-1]}
        if parts[0] == "softmax" and len(parts) > 4:
            entry["mask"] = parts[3]
        for impl, ent in r.items():
            entry[impl] = {k: v for k, v in ent.items() if k != "source"}
        for b in present:
            entry[f"{b}_over_dlk"] = ratio(r, b)
        table.append(entry)

    summary_speedups = {}
    for b in present:
        for group in sorted({(e["op"], e["dir"]) for e in table}):
            g = geomean([e.get(f"{b}_over_dlk") for e in table if (e["op"], e["dir"]) == group])
            if g:
                summary_speedups[f"{b}_over_dlk/{group[0]}/{group[1]}"] = g

    # ---- print
    out = []
    if stages:
        out.append("stages:")
        w = max(len(s["stage"]) for s in stages)
        for s in stages:
            out.append(f"  {s['stage']:<{w}}  {s['status'].upper():<5} {s['detail']}")
        out.append("")
    for c in contexts:
        if "gpu_name" in c or "copy_bw_GBps" in c:
            out.append(f"device: {c.get('gpu_name', '?')}, copy bandwidth {float(c.get('copy_bw_GBps', 0)):.0f} GB/s "
                       f"(read+write, 1 GiB cudaMemcpy D2D)")
            break
    for t in torch_info:
        out.append(f"torch {t.get('torch_version')} on {t.get('device')}, {t.get('torch_threads')} threads"
                   + (f", {t['gpu_name']}" if t.get("gpu_name") else ""))
    if table:
        kw = max(len(e["key"]) for e in table)
        cols = ["dlk us", "GB/s"] + (["%copy"] if has_pct else []) + (["TFLOP/s"] if has_tflops else []) + \
            [f"{b}/dlk" for b in present]
        if args.markdown:
            out.append("| case | " + " | ".join(cols) + " |")
            out.append("|---" * (len(cols) + 1) + "|")
        else:
            out.append(f"{'case':<{kw}} " + " ".join(f"{c:>9}" for c in cols))
        for e in table:
            d = e.get("dlk", {})
            if "error" in d:
                cells = ["skip", "-"] + (["-"] if has_pct else []) + (["-"] if has_tflops else [])
            else:
                cells = [fmt(d.get("us"), ".1f", 9), fmt(d.get("GBps"), ".2f", 9)]
                if has_pct:
                    cells.append(fmt(d.get("pct_copy_bw"), ".1f", 9))
                if has_tflops:
                    cells.append(fmt(d.get("TFLOPs"), ".3f", 9))
            for b in present:
                bd = e.get(b)
                if bd is None:
                    cells.append(fmt(None, "", 9))
                elif "error" in bd:
                    cells.append(fmt("err", "", 9))
                else:
                    cells.append(fmt(e.get(f"{b}_over_dlk"), ".2f", 9))
            if args.markdown:
                out.append(f"| {e['key']} | " + " | ".join(c.strip() for c in cells) + " |")
            else:
                out.append(f"{e['key']:<{kw}} " + " ".join(f"{c:>9}" for c in cells))
        out.append("(X/dlk = X's time over dlkernels' time: above 1, dlkernels is faster)")
    for k, v in summary_speedups.items():
        out.append(f"geomean {k}: {v:.2f}")
    errors = [(e["key"], impl, e[impl]["error"]) for e in table for impl in ["dlk"] + present
              if isinstance(e.get(impl), dict) and "error" in e[impl]]
    if errors:
        out.append(f"{len(errors)} cases skipped or failed, e.g. {errors[0][0]}/{errors[0][1]}: {errors[0][2]}")
    for p in problems:
        out.append(f"problem: {p}")
    print("\n".join(out))

    if args.out:
        summary = {"title": args.title, "note": args.note, "stages": stages, "benchmark_context": contexts, "torch": torch_info,
                   "geomean": summary_speedups, "rows": table, "problems": problems,
                   "failed_stages": [s["stage"] for s in stages if s["status"] == "fail"]}
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
