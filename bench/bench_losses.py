"""Peak memory and time of the chunked losses against the materialised ones.

At the paper's scale a float32 (N, V) logits tensor is 37 GiB for N = 64 × 4096 tokens and
V = 151,936; the materialised losses keep several of them. `losses.chunked_loss` computes the same
loss and gradient from hidden states and the LM head, `--chunk` tokens at a time.

    make bench-losses                                   # CPU, small hidden size (see below)
    python bench/bench_losses.py --device cuda --dtype bfloat16 --hidden 2048 --teacher-hidden 4096

Each measurement (forward + backward of the student's hidden states and LM head, teacher logits
under no_grad) runs in a fresh subprocess so that peak memory is its own: on CPU the growth of the
peak resident set over the resident set once the inputs exist, on CUDA the growth of
max_memory_allocated. Times are the median of --repeats runs after one warm-up. The two methods
run alternately. On CPU the default hidden sizes are small (256) so that the matrix products do not
drown the measurement; the (N, V) tensors, which are what the chunking removes, are full size.
A case that exceeds --mem-limit-gb (CPU address-space limit of the child) is reported as OOM.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(cfg: dict) -> dict:
    if cfg["device"] == "cpu" and cfg["mem_limit_gb"] > 0:
        limit = int(cfg["mem_limit_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    import losses

    torch.set_num_threads(cfg["threads"])
    dev, dtype = torch.device(cfg["device"]), getattr(torch, cfg["dtype"])
    N, V, H, Ht = cfg["n"], cfg["vocab"], cfg["hidden"], cfg["teacher_hidden"]
    g = torch.Generator(device=dev).manual_seed(0)
    h_s = (torch.randn(1, N, H, generator=g, device=dev) / H**0.5).to(dtype).requires_grad_(True)
    W_s = torch.randn(V, H, generator=g, device=dev).to(dtype).requires_grad_(True)
    h_t = (torch.randn(1, N, Ht, generator=g, device=dev) / Ht**0.5).to(dtype)
    W_t = torch.randn(V, Ht, generator=g, device=dev).to(dtype)
    y = torch.randint(0, V, (1, N), generator=g, device=dev)
    mask = torch.ones(1, N, dtype=torch.bool, device=dev)
    opts = {"k": cfg["k"]} if cfg["loss"].startswith("topk") else {}
    fn = losses.LOSSES[cfg["loss"]]

    def step():
        h_s.grad = W_s.grad = None
        if cfg["method"] == "chunked":
            loss, _ = losses.chunked_loss(
                cfg["loss"], h_s, W_s, h_t, W_t, y, mask, chunk_size=cfg["chunk"], **opts
            )
        else:
            logits_s = h_s @ W_s.T  # (1, N, V)
            with torch.no_grad():
                logits_t = h_t @ W_t.T  # (1, N, V)
            loss = losses.masked_mean(fn(logits_s, logits_t, y, **opts), mask)
        loss.backward()
        return loss.item()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    sync()
    base = torch.cuda.memory_allocated() if dev.type == "cuda" else rss_bytes()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        value = step()  # warm-up, also the peak-memory run
        sync()
        peak = (
            torch.cuda.max_memory_allocated()
            if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        ) - base
        times = []
        for _ in range(cfg["repeats"]):
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
    except (RuntimeError, MemoryError) as err:  # allocation failure under the limit
        if "memory" not in str(err).lower() and not isinstance(err, MemoryError):
            raise
        return {"oom": True}
    return {"oom": False, "seconds": statistics.median(times), "peak_gib": peak / 2**30, "loss": value}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[2048, 8192], help="numbers of response tokens")
    ap.add_argument("--vocab", type=int, default=151936, help="vocabulary size (Qwen3: 151,936)")
    ap.add_argument("--hidden", type=int, default=256, help="student hidden size (Qwen3-1.7B: 2048)")
    ap.add_argument("--teacher-hidden", type=int, default=256, help="teacher hidden size (Qwen3-8B: 4096)")
    ap.add_argument("--loss", nargs="+", default=["topk_sg", "full_rkl"], help="losses to measure")
    ap.add_argument("--k", type=int, default=20, help="K of the Top-K losses")
    ap.add_argument("--chunk", type=int, default=1024, help="tokens per chunk of the chunked loss")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument(
        "--dtype", default="float32", help="float32 or bfloat16 (inputs; the losses compute in float32)"
    )
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per case after the warm-up")
    ap.add_argument(
        "--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)), help="CPU threads"
    )
    ap.add_argument("--mem-limit-gb", type=float, default=18.0, help="CPU only: address-space limit per case")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    print(
        f"device {args.device}, dtype {args.dtype}, V {args.vocab}, hidden {args.hidden}/{args.teacher_hidden} "
        f"(student/teacher), chunk {args.chunk}, threads {args.threads}, median of {args.repeats}"
    )
    print(
        f"{'loss':10s} {'N':>6s} {'method':>12s} {'seconds':>8s} {'peak GiB':>9s} {'mem ratio':>9s} {'time ratio':>10s}"
    )
    for loss in args.loss:
        for n in args.n:
            res = {}
            for method in ("materialised", "chunked"):
                cfg = dict(vars(args), n=n, loss=loss, method=method)
                cfg.pop("child")
                out = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True
                )
                if out.returncode != 0:
                    oom = out.returncode < 0 or "memory" in out.stderr.lower()
                    if not oom:
                        sys.exit(f"case {loss} N={n} {method} failed:\n{out.stderr}")
                    res[method] = {"oom": True}
                else:
                    res[method] = json.loads(out.stdout.strip().splitlines()[-1])
            m, c = res["materialised"], res["chunked"]
            for method, r in res.items():
                if r["oom"]:
                    limit = f">{args.mem_limit_gb:g}" if args.device == "cpu" else "> GPU"
                    print(f"{loss:10s} {n:6d} {method:>12s} {'OOM':>8s} {limit:>9s}")
                    continue
                ratio_m = ratio_t = ""
                if method == "chunked" and not m["oom"]:
                    ratio_m = f"{r['peak_gib'] / m['peak_gib']:.3f}"
                    ratio_t = f"{r['seconds'] / m['seconds']:.2f}"
                seconds, peak = f"{r['seconds']:8.2f}", f"{r['peak_gib']:9.2f}"
                print(f"{loss:10s} {n:6d} {method:>12s} {seconds} {peak} {ratio_m:>9s} {ratio_t:>10s}")
            if not m["oom"] and not c["oom"]:
                assert abs(m["loss"] - c["loss"]) <= 1e-3 * max(1.0, abs(m["loss"])), (m["loss"], c["loss"])
    print("ratios: chunked / materialised (goal: memory <= 0.2 at time <= 1.0)")


if __name__ == "__main__":
    main()
