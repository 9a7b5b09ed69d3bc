"""The arithmetic behind the benchmarks' printed analysis, against torch's own FLOP counter.

Command: `pytest -q tests/test_bench.py` (CPU, a few seconds).

bench_step's product floor divides the FLOPs of each phase's weight products by a measured GEMM
rate; here those FLOPs are compared with what torch.utils.flop_counter counts while the packed
scoring forward actually runs, which also checks that it spends no product on padding.
"""

import os
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import decoder
import packed
from bench_step import product_flops
from test_rollout import random_model


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_product_flops_are_what_the_packed_forward_computes(arch):
    model = random_model(arch)
    # a shared prefix of 3 and padding
    contexts = [[7, 8, 9, 3, 4], [7, 8, 9, 5], [7, 8, 9, 1, 2, 3, 4, 5, 6]]
    responses = [[10, 11, 12], [20], [30, 31, 32, 33]]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        hidden, mask = packed.response_hidden(model, contexts, responses)
        F.linear(hidden[mask], model.lm_head.weight)  # the output layer on the returned positions
    counted = sum(v for k, v in counter.get_flop_counts()["Global"].items() if "mm" in str(k))
    c = decoder.shared_prefix(contexts)
    n_all = c + sum(len(x) - c + len(r) for x, r in zip(contexts, responses))
    assert counted == product_flops(model, n_all, sum(map(len, responses)))
