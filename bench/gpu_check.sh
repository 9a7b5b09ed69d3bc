#!/usr/bin/env bash
# Every GPU measurement of docs/performance.md in one run, each under a time limit, so that one short
# session on a lent GPU gives them all (at most 12 minutes of limits). Random-init models of the
# paper's shapes (bench/shapes.py): nothing is downloaded. Results go to $OUT (default gpu-results/).
#
#     bash bench/gpu_check.sh        # PEAK_GBPS: the device's memory bandwidth (H200: 4800, H100 SXM: 3350)
set -u
OUT=${OUT:-gpu-results}
PEAK_GBPS=${PEAK_GBPS:-4800}
PY=${PY:-python}
mkdir -p "$OUT"
run() {  # run NAME SECONDS COMMAND...: output to $OUT/NAME.txt, the exit status appended
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit} s): $*"
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "exit status $?" >> "$OUT/$name.txt"
    tail -n 15 "$OUT/$name.txt"
}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
# 1. the CUDA-graph sampler gives the eager sampler's greedy tokens (bf16, Qwen3-0.6B shapes)
run graph_equals_eager 90 $PY - <<'PY'
import sys; sys.path[:0] = [".", "bench"]
import torch, rollout
from shapes import build
model = build("qwen3-0.6b", "cuda", torch.bfloat16)
prompts = [list(range(5, 5 + n)) for n in (40, 33, 57, 12)]
kw = dict(temperature=0, eos_token_ids=[10**6], pad_token_id=0)
a = rollout.generate(model, prompts, 64, **kw)
b = rollout.generate(model, prompts, 64, cuda_graph=True, **kw)
print("greedy tokens equal:", torch.equal(a.response, b.response),
      "max |logp gap|:", float((a.logp - b.logp).abs().max()))
PY
# 2. decode at Qwen3-1.7B shapes, batch 64, 256 + 3,840 tokens, bf16, CUDA graph: memory-bandwidth utilisation
run rollout_1p7b_64x4096 180 $PY bench/bench_rollout.py --device cuda --shapes qwen3-1.7b --batch 64 \
    --prompt-len 256 --new-tokens 3840 --repeats 1 --cuda-graph --skip-hf --peak-gbps "$PEAK_GBPS"
# 3. the same shapes against transformers' static cache + torch.compile, 256 new tokens (compiled in the
#    warm-up)
run rollout_1p7b_vs_static_compile 150 $PY bench/bench_rollout.py --device cuda --shapes qwen3-1.7b \
    --batch 64 --prompt-len 256 --new-tokens 256 --repeats 1 --cuda-graph --hf static-compile \
    --peak-gbps "$PEAK_GBPS"
# 4. one paper step (the first: no warm-up step): random Qwen3-1.7B student <- random Qwen3-8B teacher,
#    64 x 4,096 tokens, seconds per phase and peak memory; the student samples from a bf16 copy of its
#    float32 weights (the CUDA default) and the rollout-vs-train log-prob gap is printed
run paper_step 300 $PY bench/bench_step.py --student random:qwen3-1.7b --teacher random:qwen3-8b \
    --max-new-tokens 4096 --micro-batch 4 --chunk-size 1024 --rollout-batch 64 --grad-checkpointing \
    --cuda-graph --steps 1 --warmup 0
echo "results in $OUT/"
