#!/usr/bin/env bash
# Kills a GPT training run with SIGKILL mid-way, resumes it from its last checkpoint, and checks that the loss trace
# and the final checkpoint are byte-identical to an uninterrupted run (the "tried as a new user would" check).
#   models/gpt/kill_resume_check.sh [path/to/dlk]      (default: build/dlk)
set -euo pipefail
dlk=$(realpath "${1:-build/dlk}")
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
args=(--task counting --config small --n-layer 2 --n-embd 32 --n-head 2 --block-size 16 --batch-size 8 --max-iters 80
      --ckpt-interval 20 --eval-interval 20 --eval-iters 4 --log-interval 1 --dropout 0.1 --sample-tokens 0)
"$dlk" train gpt "${args[@]}" --out straight > straight.log 2>&1
"$dlk" train gpt "${args[@]}" --out killed > killed.log 2>&1 &
pid=$!
until grep -q "^step    50/" killed.log 2>/dev/null; do sleep 0.05; done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
echo "killed after $(grep -c '^step .*/80' killed.log) steps; resuming"
"$dlk" train gpt "${args[@]}" --out killed --resume > resumed.log 2>&1
head -n 1 resumed.log
cmp straight/loss.csv killed/loss.csv && echo "loss.csv identical"
cmp straight/ckpt.bin killed/ckpt.bin && echo "final checkpoint identical"
