"""On-policy distillation (OPD): the student writes, the teacher grades every token, one step.

What this file is
    The training loop of DESIGN.md §2, whole in one file: a batch of prompts → the student samples
    one response each (rollout.generate, its own KV-cache sampler) → the teacher scores the same
    response tokens after its own context under no_grad (rollout.score) → the student is re-run
    with gradients over prompt + response → losses.LOSSES[--loss] per token → losses.masked_mean
    → one optimizer step per rollout batch (strictly on-policy). Monitors go to a JSONL file and
    a progress line every step; held-out evaluation every --eval-every steps; checkpoints that
    `--resume` continues exactly (same prompts, same sampling noise).

Paper (PAPER.md beside the design documents)
    §2.1 OPD; §2.4 hyperparameters (`--preset paper`); §3 the losses (default `topk_sg`, K = 20:
    Fix 1); §2.5 the collapse monitors (length, truncation, 3-gram repetition, hedging words,
    Top-K mass and overlap, teacher rank of the sampled token).

Commands
    make opd                                   # the tiny world, CPU, offline (--preset tiny)
    python train_opd.py --loss topk_plain --k 5 --out runs/plain5     # Mechanism 2 in the tiny world
    python train_opd.py --preset paper --student Qwen/Qwen3-1.7B --teacher Qwen/Qwen3-8B --data dapo
    python train_opd.py --out runs/x --resume  # continue a killed run from its last checkpoint
    torchrun --nproc_per_node 8 train_opd.py --preset paper ... --chunk-size 0 --rollout-batch 8
                                               # FSDP2 over 8 GPUs, each its share of the batch (distributed.py)

What it simplifies
    * The student samples with the same weights the optimizer updates (under torchrun, gathered
      from their shards), so the rollout is exactly on-policy (the log-prob mismatch monitor checks it).
    * The sampling temperature / top-p change which tokens are drawn; every loss is computed
      against the model's untempered distribution p (as the paper's code does).
    * No task-reward term: pure distillation, as in every Top-K run of the paper (§2.4).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch

import data
import distributed
import eval_math
import losses
import models
import rollout

# -----------------------------------------------------------------------------
# Config: presets named after where they come from, then the command line on top

PRESETS = {
    # The tiny world (DESIGN.md §4): shipped checkpoints, synthetic arithmetic, CPU in minutes.
    # The loss is the tail-bucket Top-20 (§3.6), not topk_sg: with a 261-token vocabulary the sg loss
    # leaves the tail mass free and it leaks (README, Results: Mechanism 2), at lr 1e-4 as well.
    "tiny": dict(student="tiny/student", teacher="tiny/teacher", data="synthetic", eval_data="synthetic",
                 loss="topk_tail", k=20, hard_frac=0.0,
                 steps=300, batch_size=64, micro_batch=64, max_new_tokens=80, temperature=1.0, top_p=1.0,
                 lr=3e-4, warmup_frac=0.0, weight_decay=0.0, beta1=0.9, beta2=0.98, grad_clip=1.0,
                 eval_every=50, eval_n=300, eval_k=1, eval_temperature=1.0, eval_top_p=1.0,
                 eval_max_new_tokens=80, ckpt_every=50, grad_checkpointing=False, chunk_size=0, rollout_batch=0),
    # PAPER.md §2.4, "OPD TopK runs (Qwen3-1.7B)": Adam lr 2e-6, cosine, 10 % warm-up, wd 0.1,
    # betas (0.9, 0.98), 64 prompts x 1 sample, 4096 tokens, T = 1.0, top-p 0.95, 1000 rollouts;
    # in-training evaluation at T = 0.6, top-p 0.95 every 10 rollouts (eval length cut from the
    # code's 16,384 to 8,192 here to keep evaluation affordable; raise --eval-max-new-tokens).
    "paper": dict(student="Qwen/Qwen3-1.7B", teacher="Qwen/Qwen3-8B", data="dapo", eval_data="math500",
                  loss="topk_sg", k=20, hard_frac=0.0, steps=1000, batch_size=64, micro_batch=4, max_new_tokens=4096, temperature=1.0, top_p=0.95,
                  lr=2e-6, warmup_frac=0.1, weight_decay=0.1, beta1=0.9, beta2=0.98, grad_clip=1.0,
                  eval_every=10, eval_n=500, eval_k=1, eval_temperature=0.6, eval_top_p=0.95,
                  eval_max_new_tokens=8192, ckpt_every=50, grad_checkpointing=True, chunk_size=1024,
                  rollout_batch=16),
}


def build_parser(presets: dict = PRESETS, description: str = __doc__, teacher_flag: bool = True,
                 loss_flags: bool = True) -> argparse.ArgumentParser:
    """The command line. train_opsd.py reuses it with its own presets and no --teacher (its teacher
    is the student's own weights); train_grpo.py with neither --teacher nor the distillation-loss
    flags (its signal is the grader's reward)."""
    ap = argparse.ArgumentParser(description=description.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    default = next(iter(presets))
    ap.add_argument("--preset", default=default, choices=sorted(presets), help=f"defaults for every flag below (default: {default})")
    g = ap.add_argument_group("models and data")
    g.add_argument("--student", help="student: hub id or local folder (tiny: tiny/student)")
    if teacher_flag:
        g.add_argument("--teacher", help="teacher: hub id or local folder (tiny: tiny/teacher)")
    g.add_argument("--data", help="training prompts: synthetic, dapo, openthoughts, math500, or a .jsonl path")
    g.add_argument("--data-path", help="read --data from this local file instead of the hub")
    g.add_argument("--eval-data", help="held-out problems: synthetic, math500, aime24, aime25, or a .jsonl path")
    g.add_argument("--hard-frac", type=float, help="synthetic only: fraction of 2-digit products (data.py; tiny: 0)")
    if loss_flags:
        g = ap.add_argument_group("loss (losses.py, PAPER.md §3)")
        g.add_argument("--loss", choices=sorted(losses.LOSSES),
                       help="per-token loss (paper: topk_sg, Fix 1; tiny: topk_tail, see the preset)")
        g.add_argument("--k", type=int, help="K of the Top-K losses (paper and tiny: 20)")
        g.add_argument("--beta", type=float, default=0.5, help="beta of jsd (0 forward KL, 1 reverse KL)")
        g.add_argument("--length-gate", type=int, default=0,
                       help="drop responses longer than this many tokens from the loss (the paper code's gate; 0 = off)")
    g = ap.add_argument_group("rollout")
    g.add_argument("--batch-size", type=int, help="prompts per step, one response each (paper: 64)")
    g.add_argument("--max-new-tokens", type=int, help="response length cap (paper: 4096)")
    g.add_argument("--temperature", type=float, help="sampling temperature (paper: 1.0)")
    g.add_argument("--top-p", type=float, help="nucleus sampling (paper: 0.95)")
    g.add_argument("--rollout-batch", type=int,
                   help="rows sampled at a time (the KV cache holds this many rows; default: the whole batch); "
                        "the sampling noise depends on the grouping, so changing it changes the draws")
    g.add_argument("--cuda-graph", action="store_true", help="capture the sampler's decode step as a CUDA graph")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, help="optimizer steps = rollout batches (paper: 1000)")
    g.add_argument("--micro-batch", type=int, help="rows per forward/backward; gradients accumulate over the batch")
    g.add_argument("--lr", type=float, help="peak learning rate (paper: 2e-6)")
    g.add_argument("--warmup-frac", type=float, help="linear warm-up as a fraction of --steps, then cosine to 0")
    g.add_argument("--weight-decay", type=float, help="decoupled weight decay (paper: 0.1)")
    g.add_argument("--beta1", type=float, help="Adam beta1 (paper: 0.9)")
    g.add_argument("--beta2", type=float, help="Adam beta2 (paper: 0.98)")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm at this value (0 = off)")
    g.add_argument("--grad-checkpointing", type=int, choices=(0, 1), help="recompute the student's activations in backward")
    g.add_argument("--amp", type=int, choices=(0, 1),
                   help="1: the student's training forward in bf16 autocast over float32 weights (default on CUDA)")
    if loss_flags:
        g.add_argument("--chunk-size", type=int,
                       help="0: loss on full logits; N > 0: losses.chunked_loss over N tokens at a time (paper scale)")
    g = ap.add_argument_group("evaluation, logging, checkpoints")
    g.add_argument("--eval-every", type=int, help="evaluate the student every this many steps (0 = start and end only)")
    g.add_argument("--eval-n", type=int, help="held-out problems per evaluation")
    g.add_argument("--eval-k", type=int, help="samples per problem (avg@k)")
    g.add_argument("--eval-temperature", type=float, help="evaluation sampling temperature")
    g.add_argument("--eval-top-p", type=float, help="evaluation top-p")
    g.add_argument("--eval-max-new-tokens", type=int, help="evaluation length cap")
    g.add_argument("--ckpt-every", type=int, help="save a checkpoint every this many steps (0 = only at the end)")
    g.add_argument("--out", default="runs/opd", help="run folder: config.json, metrics.jsonl, eval/, ckpt/")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    g.add_argument("--stop-at", type=int, default=0,
                   help="stop after this step with a checkpoint, to continue with --resume (a job with a time limit)")
    g.add_argument("--seed", type=int, default=0, help="seeds data order, sampling and evaluation")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    return ap


def resolve_config(argv=None, parser=None, presets: dict = PRESETS) -> dict:
    """Preset values, then every flag given on the command line on top."""
    args = (parser or build_parser()).parse_args(argv)
    cfg = dict(presets[args.preset])
    for key, val in vars(args).items():
        if val is not None or key not in cfg:
            cfg[key] = val
    cfg["grad_checkpointing"] = bool(cfg["grad_checkpointing"])
    if cfg.get("amp") is None:  # bf16 compute where it pays; the weights the optimizer updates stay float32
        cfg["amp"] = torch.cuda.is_available() and cfg.get("device") in (None, "cuda")
    cfg["amp"] = bool(cfg["amp"])
    return cfg


# -----------------------------------------------------------------------------
# The algorithm: one OPD step (DESIGN.md §2). train_opsd.py calls this with other teacher contexts.

def loss_options(cfg: dict) -> dict:
    name = cfg["loss"]
    if name.startswith("topk"):
        return {"k": cfg["k"]}
    if name == "jsd":
        return {"beta": cfg["beta"]}
    return {}


def pad_right(rows: list, pad_id: int, device) -> torch.Tensor:
    T = max(max(len(r) for r in rows), 1)
    out = torch.full((len(rows), T), pad_id, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device)  # (B, T)


def chunk_generator(generator: torch.Generator, chunk: int) -> torch.Generator:
    """The sampling noise of rollout chunk `chunk` of a step (--rollout-batch rows each): chunk 0
    draws from the step's generator, chunk c > 0 from one seeded by (the step's seed, c). The draws
    of a chunk do not depend on which process samples it (distributed.py)."""
    if chunk == 0:
        return generator
    return torch.Generator(device=generator.device).manual_seed(generator.initial_seed() + 1_000_033 * chunk)


def sample_rows(student, tok, prompts: list, cfg: dict, generator) -> tuple:
    """The student's responses to this process's rows, --rollout-batch rows at a time (the KV cache
    is rollout_batch x (P + T)): per row its ids (EOS included), the sampler's log p(y_t) at T = 1,
    and whether it was truncated."""
    rank, world = distributed.world()
    rb = cfg.get("rollout_batch") or len(prompts)
    if world > 1 and len(prompts) % rb:  # else a process's chunks would not be whole chunks of the batch
        raise ValueError(f"--rollout-batch {rb} must divide the {len(prompts)} rows of each process")
    responses, logp, truncated = [], [], []
    with distributed.full_weights(student):  # the sampler reads the weights directly
        for c, start in enumerate(range(0, len(prompts), rb)):
            gen = chunk_generator(generator, rank * (len(prompts) // rb) + c)  # the chunk's index in the whole batch
            ro = rollout.generate(student, prompts[start:start + rb], cfg["max_new_tokens"],
                                  temperature=cfg["temperature"], top_p=cfg["top_p"], eos_token_ids=tok.eos_token_ids,
                                  pad_token_id=tok.pad_token_id, generator=gen, cuda_graph=cfg.get("cuda_graph", False))
            for row, ids in enumerate(ro.responses()):
                responses.append(ids)
                logp.append(ro.logp[row, :len(ids)])
                truncated.append(bool(ro.truncated[row]))
    return responses, logp, truncated


def opd_step(student, teacher, tok, student_prompts: list, teacher_contexts: list, cfg: dict,
             optimizer, scheduler, generator) -> dict:
    """Rollout → teacher scoring → student forward/backward → one optimizer step. Returns monitors.
    Under torchrun the prompts are this process's rows of the batch (distributed.py)."""
    device = next(student.parameters()).device
    world = distributed.world()[1]
    timer = {}
    # 1. The student writes one response per prompt (no gradients, its own sampler).
    t0 = time.perf_counter()
    student.eval()
    responses, rollout_logp, truncated = sample_rows(student, tok, student_prompts, cfg, generator)
    timer["time/rollout_s"] = time.perf_counter() - t0

    # Which sequences enter the loss: all of them, minus those over the length gate (masked out, so
    # that every process runs the same forwards). n_keep: kept rows per process, over all processes.
    keep = [len(r) > 0 and (cfg["length_gate"] <= 0 or len(r) <= cfg["length_gate"]) for r in responses]
    n_keep = max(distributed.all_sum(sum(keep)) / world, 1 / world)
    fn, opts = losses.LOSSES[cfg["loss"]], loss_options(cfg)

    # 2-3. Teacher scoring and the student's training forward, micro-batch by micro-batch.
    student.train()
    optimizer.zero_grad(set_to_none=True)
    timer["time/teacher_s"] = timer["time/student_s"] = 0.0
    sums = {"loss": 0.0, "kl/reverse_est": 0.0, "kl/full": 0.0, "topk/student_mass": 0.0, "topk/teacher_mass": 0.0,
            "topk/overlap": 0.0, "topk/teacher_rank": 0.0}
    n_mon, mismatch = 0, 0.0  # tokens the monitors saw
    mb = cfg["micro_batch"]
    for start in range(0, len(responses), mb):
        rows = list(range(start, min(start + mb, len(responses))))
        resp = [responses[i] for i in rows]
        tokens = pad_right(resp, tok.pad_token_id, device)  # (b, T) the sampled ids
        t0 = time.perf_counter()
        chunked = cfg["chunk_size"] > 0  # paper scale: never make (b, T, V) logits for the loss
        with torch.no_grad():
            out_t, mask = rollout.score(teacher, [teacher_contexts[i] for i in rows], resp, return_hidden=chunked)
        mask = mask & torch.tensor([keep[i] for i in rows], device=mask.device)[:, None]  # (b, T) gated rows out
        timer["time/teacher_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg["amp"]):  # fp32 weights, bf16 compute
            out_s, _ = rollout.score(student, [student_prompts[i] for i in rows], resp, return_hidden=chunked)  # with grad
        if chunked:  # out_* are final hidden states (b, T, d); the output layers make the logits per chunk
            V = min(student.lm_head.weight.shape[0], teacher.lm_head.weight.shape[0])
            W_s, W_t = student.lm_head.weight[:V], teacher.lm_head.weight[:V]
            mb_loss, _ = losses.chunked_loss(cfg["loss"], out_s, W_s, out_t, W_t, tokens, mask,
                                             chunk_size=cfg["chunk_size"], **opts)
        else:
            V = min(out_s.shape[-1], out_t.shape[-1])  # padded embedding rows (Qwen2.5) map to no token
            out_s, out_t = out_s[..., :V], out_t[..., :V]
            mb_loss = losses.masked_mean(fn(out_s, out_t, tokens, **opts), mask)  # (b, T) -> scalar
        # masked_mean over the whole batch = Σ over micro-batches of (its mean) · (its rows / all rows);
        # FSDP averages the processes' gradients, hence rows per process in n_keep
        loss = mb_loss * (sum(keep[i] for i in rows) / n_keep)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at rows {rows[:4]}...; check the teacher's "
                                     "logits and the learning rate (the last good checkpoint is in ckpt/)")
        loss.backward()
        timer["time/student_s"] += time.perf_counter() - t0
        sums["loss"] += loss.item()
        # Monitors (no gradients): on the whole micro-batch, or on its first row when chunking.
        with torch.no_grad():
            if chunked:
                ls, lt = out_s[:1].detach() @ W_s.T, out_t[:1] @ W_t.T  # (1, T, V)
                tok_m, m, ro_rows = tokens[:1], mask[:1], rows[:1]
            else:
                ls, lt, tok_m, m, ro_rows = out_s.detach(), out_t, tokens, mask, rows
            logp_y = losses.student_logprobs_at(ls, tok_m[..., None])[..., 0]  # training forward's log p(y)
            logq_y = losses.teacher_logprobs_at(lt, tok_m[..., None])[..., 0]
            n = int(m.sum())
            n_mon += n
            sums["kl/reverse_est"] += float((logp_y - logq_y)[m].sum())
            sums["kl/full"] += float(losses.full_rkl(ls, lt)[m].sum())
            st = losses.topk_stats(ls, lt, cfg["k"], tokens=tok_m)
            for key in ("student_mass", "teacher_mass", "overlap", "teacher_rank"):
                sums[f"topk/{key}"] += float(st[key].float()[m].sum())
            ro_logp = torch.stack([torch.nn.functional.pad(rollout_logp[i], (0, tok_m.shape[1] - len(rollout_logp[i])))
                                   for i in ro_rows]).to(logp_y.device)  # (b, T) the sampler's log p(y_t)
            mismatch = max(mismatch, float((ro_logp - logp_y)[m].abs().max()) if n else 0.0)

    # 4. One optimizer step per rollout batch: strictly on-policy.
    t0 = time.perf_counter()
    grad_norm = clip_grad_norm(student, cfg["grad_clip"])
    optimizer.step()
    scheduler.step()
    timer["time/optim_s"] = time.perf_counter() - t0

    # Monitors over the whole batch: every process's sums, responses and worst mismatch combined.
    responses, truncated = distributed.gather(responses), distributed.gather(truncated)
    n_resp = sum(len(r) for r in responses)
    texts = [tok.decode(r) for r in responses]
    stats = eval_math.response_stats(responses, texts, truncated)
    n_mon = distributed.all_sum(n_mon)
    out = {"loss": distributed.all_sum(sums.pop("loss")) / world}
    out.update({k: distributed.all_sum(v) / max(n_mon, 1) for k, v in sums.items()})
    out.update(stats)
    out.update(timer)
    total_s = sum(timer.values())
    out.update({"logp/rollout_vs_train_max_abs": distributed.all_max(mismatch), "grad_norm": grad_norm,
                "lr": scheduler.get_last_lr()[0], "tokens": n_resp, "tokens_per_s": n_resp / max(total_s, 1e-9),
                "kept_frac": distributed.all_sum(sum(keep)) / len(responses)})
    return out


def clip_grad_norm(model, max_norm: float) -> float:
    """Clip the gradient's global norm (over every shard under FSDP) at max_norm (0 = no clip); its norm."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


# -----------------------------------------------------------------------------
# Plumbing: models, data, schedule, evaluation, checkpoints

def cosine_schedule(optimizer, steps: int, warmup_frac: float):
    warmup = int(round(warmup_frac * steps))

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(steps - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_examples(cfg: dict, which: str) -> list:
    name = cfg["data"] if which == "train" else cfg["eval_data"]
    if name == "synthetic":
        n = 20_000 if which == "train" else cfg["eval_n"]
        return data.load_examples("synthetic", n=n, split="train" if which == "train" else "eval",
                                  seed=cfg["seed"], hard_frac=cfg["hard_frac"])
    path = cfg["data_path"] if which == "train" else None
    examples = data.load_examples(name, path=path)
    return examples if which == "train" else examples[: cfg["eval_n"]]


def check_prompt_lengths(model, prompts: list, max_new_tokens: int, what: str) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(p) for p in prompts)
    if limit is not None and longest + max_new_tokens > limit:
        raise ValueError(f"a {what} prompt has {longest} tokens; with {max_new_tokens} new tokens that exceeds the "
                         f"model's context of {limit}; lower --max-new-tokens or filter long prompts")


def evaluate(model, tok, examples: list, cfg: dict, out_path: str, label: str, pi: str = "none",
             extra=None) -> dict:
    """Held-out summary (eval_math.evaluate) written to out_path; `extra(records) -> dict` adds
    run-specific numbers. Under torchrun each process samples every W-th problem (its own noise)
    and the records of all processes are summarised together."""
    rank, world = distributed.world()
    with distributed.full_weights(model):  # the sampler reads the weights directly
        summary, records = eval_math.evaluate(model, tok, examples[rank::world], k=cfg["eval_k"],
                                              temperature=cfg["eval_temperature"], top_p=cfg["eval_top_p"],
                                              max_new_tokens=cfg["eval_max_new_tokens"],
                                              batch_size=max(cfg["micro_batch"], 16), seed=cfg["seed"] + 1 + 7919 * rank,
                                              pi=pi, bench=label, progress=False)
    if world > 1:
        records = distributed.gather(records)
        summary.update(eval_math.summarize(records, cfg["eval_k"]))
    if rank == 0:
        eval_math.write_jsonl(out_path, records)
    return {**summary, **extra(records)} if extra else summary


def save_checkpoint(out: str, student, tok, optimizer, scheduler, stream, step: int, history: list, side=None) -> None:
    """ckpt/: the student's full weights in transformers format, train_state.pt (step, schedule, data
    position, RNG, history) and rank{r}.pt per process (its optimizer state and teacher state)."""
    rank, world = distributed.world()
    path = os.path.join(out, "ckpt")
    tmp = path + ".tmp"
    full = distributed.full_state_dict(student) if world > 1 else None  # a collective: every process
    if rank == 0:
        models.save(student, tok, tmp, state_dict=full)
        torch.save({"step": step, "scheduler": scheduler.state_dict(), "stream": stream.state_dict(),
                    "python_random": random.getstate(), "torch_random": torch.random.get_rng_state(),
                    "history": history, "world": world}, os.path.join(tmp, "train_state.pt"))
    distributed.barrier()
    torch.save({"optimizer": optimizer.state_dict(), "teacher": side.state_dict() if side is not None else {}},
               os.path.join(tmp, f"rank{rank}.pt"))
    distributed.barrier()
    if rank == 0:
        if os.path.exists(path):
            os.rename(path, path + ".old")
        os.rename(tmp, path)  # the previous checkpoint stays valid until the new one is complete
        if os.path.exists(path + ".old"):
            import shutil
            shutil.rmtree(path + ".old")
    distributed.barrier()


def log(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class Teacher:
    """Who grades the student's tokens, and after which context. OPD (this file): a separate,
    frozen model reading the student's own prompt. train_opsd.py subclasses it: the student's own
    weights (frozen, live or EMA) reading a privileged context (PAPER.md §5). train_grpo.py too:
    there no model grades tokens (`model` is None) and the grader's reward is the signal."""
    eval_pi = "none"  # the PI mode the teacher is evaluated with (its context at step 0)

    def __init__(self, cfg: dict, student, tok, device):
        # The teacher runs in bf16 on CUDA, float32 on CPU; it must share the student's vocabulary.
        self.model, tok_t = models.load(cfg["teacher"], device=device)
        models.check_compatible((student, tok), (self.model, tok_t))
        self.model.requires_grad_(False).eval()

    def contexts(self, tok, examples: list, student_prompts: list) -> list:
        return student_prompts  # OPD: the teacher reads exactly what the student read

    def step(self, student, tok, examples: list, prompts: list, cfg: dict, optimizer, scheduler, generator) -> dict:
        """One training step on this batch (DESIGN.md §2): opd_step with this teacher's contexts."""
        return opd_step(student, self.model, tok, prompts, self.contexts(tok, examples, prompts), cfg, optimizer,
                        scheduler, generator)

    def after_step(self, student) -> None:
        pass  # a fixed teacher: nothing to update

    def eval_extra(self, records: list) -> dict:
        return {}  # numbers added to every held-out evaluation (OPSD: how often the rule is followed)

    def state_dict(self) -> dict:
        return {}  # what a checkpoint must hold to resume the teacher exactly (EMA weights)

    def load_state_dict(self, state: dict) -> None:
        pass


def main(argv=None) -> dict:
    return run(resolve_config(argv), Teacher)


PROGRESS = (("loss", "loss"), ("kl/full", "kl"), ("reward/mean", "reward"), ("len/mean", "len"),
            ("len/truncated_frac", "trunc"), ("topk/overlap", "overlap"))  # the progress line's monitors


def run(cfg: dict, teacher_cls=Teacher, name: str = "OPD") -> dict:
    """The whole run: setup, resume, evaluation at step 0, the training steps (teacher_cls.step),
    final evaluation. `name` (OPD, OPSD, GRPO) heads the printed summary."""
    import transformers
    transformers.utils.logging.disable_progress_bar()  # no loading/saving bars between our progress lines
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = distributed.init(torch.device(cfg["device"]) if cfg["device"] else models.default_device())
    rank, world = distributed.world()  # (0, 1) without torchrun
    say = (lambda *a, **k: print(*a, **k, file=sys.stderr)) if rank == 0 else (lambda *a, **k: None)
    if cfg["batch_size"] % world:
        raise ValueError(f"--batch-size {cfg['batch_size']} must be a multiple of the {world} processes")
    if world > 1 and cfg.get("chunk_size"):
        raise ValueError("--chunk-size reads the LM head outside the model's forward, which FSDP does not gather; "
                         "under torchrun use --chunk-size 0 (each process holds only its share of the batch's logits) "
                         "and a smaller --micro-batch")
    out = cfg["out"]
    ckpt = os.path.join(out, "ckpt")
    if cfg["resume"]:
        if not os.path.exists(os.path.join(ckpt, "train_state.pt")):
            raise FileNotFoundError(f"--resume: no checkpoint in {ckpt}; start without --resume")
        saved = json.load(open(os.path.join(out, "config.json")))
        changed = {k: (saved.get(k), v) for k, v in cfg.items() if k not in ("resume", "steps", "threads", "stop_at")
                   and saved.get(k) != v}
        if changed:
            raise ValueError(f"--resume with a different config than the run in {out}: {changed}; "
                             "resume with the same flags (only --steps, --stop-at and --threads may change)")
    elif os.path.exists(os.path.join(out, "metrics.jsonl")):
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    distributed.barrier()  # every process has checked the folder before rank 0 writes to it
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    say("config: " + json.dumps(cfg) + (f"; {world} processes" if world > 1 else ""))
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])

    # Models: the teacher is frozen; both must share one vocabulary.
    # The student stays float32: Adam updates of lr 2e-6 vanish when rounded into bf16 weights
    # (8 bits of mantissa); bf16 compute comes from autocast (--amp). The teacher runs in bf16 on CUDA.
    student, tok = models.load(ckpt if cfg["resume"] else cfg["student"], device=device, dtype=torch.float32)
    side = teacher_cls(cfg, student, tok, device)
    teacher = side.model
    if cfg["grad_checkpointing"]:
        enable = getattr(student, "activation_checkpointing_enable", None) or student.gradient_checkpointing_enable
        enable()  # recompute each layer's activations in backward (the name changed in transformers 5.x)
        student.config.use_cache = False
    if world > 1:  # FSDP2: the student sharded for training, a separate teacher sharded for inference
        distributed.shard(student)
        if teacher is not None and teacher is not student:
            distributed.shard(teacher)

    # Data: a resumable prompt stream; held-out problems never seen in training.
    train = load_examples(cfg, "train")
    held_out = load_examples(cfg, "eval")
    stream = data.PromptStream(train, cfg["batch_size"], seed=cfg["seed"])
    sample = train[:1000]
    sample_prompts = [data.context_ids(tok, ex) for ex in sample]
    check_prompt_lengths(student, sample_prompts, cfg["max_new_tokens"], "training")
    if teacher is not None:
        check_prompt_lengths(teacher, side.contexts(tok, sample, sample_prompts), cfg["max_new_tokens"], "teacher")

    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]),
                                  weight_decay=cfg["weight_decay"])
    # the schedule counts optimizer steps: one per rollout batch (GRPO: --minibatches of them)
    scheduler = cosine_schedule(optimizer, cfg["steps"] * cfg.get("minibatches", 1), cfg["warmup_frac"])
    start, history = 0, []
    if cfg["resume"]:
        state = torch.load(os.path.join(ckpt, "train_state.pt"), weights_only=False)
        if state.get("world", 1) != world:
            raise ValueError(f"{ckpt} was written by {state.get('world', 1)} processes, this run has {world}: the "
                             "optimizer is saved one shard per process; resume with the same number")
        shard_state = torch.load(os.path.join(ckpt, f"rank{rank}.pt"), weights_only=False)
        optimizer.load_state_dict(shard_state["optimizer"])
        side.load_state_dict(shard_state["teacher"])
        scheduler.load_state_dict(state["scheduler"])
        stream.load_state_dict(state["stream"])
        random.setstate(state["python_random"])
        torch.random.set_rng_state(state["torch_random"])
        start, history = state["step"], state["history"]
        say(f"resumed from {ckpt} at step {start}")

    metrics_path = os.path.join(out, "metrics.jsonl")
    eval_dir = os.path.join(out, "eval")
    os.makedirs(eval_dir, exist_ok=True)
    log_main = (lambda path, rec: log(path, rec)) if rank == 0 else (lambda path, rec: None)
    if start == 0:
        evals = {}
        if teacher is not None:
            evals["teacher"] = evaluate(teacher, tok, held_out, cfg, os.path.join(eval_dir, "teacher.jsonl"), "teacher",
                                        pi=side.eval_pi, extra=side.eval_extra)
        evals["student"] = evaluate(student, tok, held_out, cfg, os.path.join(eval_dir, "step0.jsonl"), "student",
                                    extra=side.eval_extra)
        history = [{"step": 0, "who": who, **ev} for who, ev in evals.items()]
        log_main(metrics_path, {"step": 0, "eval": evals})
        say("step 0: " + ", ".join(f"{who} acc {ev['acc/pass@1']:.3f}" for who, ev in evals.items()))

    t_run = time.time()
    for step in range(start, cfg["steps"]):
        batch = next(stream)  # the whole batch, the same in every process; each takes its own rows
        batch = batch[rank * len(batch) // world:(rank + 1) * len(batch) // world]
        prompts = [data.context_ids(tok, ex) for ex in batch]
        generator = torch.Generator(device=device).manual_seed(cfg["seed"] * 1_000_003 + step)  # resumable noise
        m = side.step(student, tok, batch, prompts, cfg, optimizer, scheduler, generator)
        side.after_step(student)
        record = {"step": step + 1, **{k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}}
        done = step + 1
        if cfg["eval_every"] and done % cfg["eval_every"] == 0 and done < cfg["steps"]:
            ev = evaluate(student, tok, held_out, cfg, os.path.join(eval_dir, f"step{done}.jsonl"), "student",
                          extra=side.eval_extra)
            history.append({"step": done, "who": "student", **ev})
            record["eval"] = {"student": ev}
        log_main(metrics_path, record)
        shown = "  ".join(f"{label} {m[key]:.4g}" for key, label in PROGRESS if key in m)
        say(f"\rstep {done}/{cfg['steps']}  {shown}  {time.time() - t_run:.0f} s"
            + (f"  eval acc {record['eval']['student']['acc/pass@1']:.3f}" if "eval" in record else ""),
            end="\n" if "eval" in record else "", flush=True)
        if cfg["ckpt_every"] and done % cfg["ckpt_every"] == 0 and done < cfg["steps"]:
            save_checkpoint(out, student, tok, optimizer, scheduler, stream, done, history, side)
        if cfg["stop_at"] and done == cfg["stop_at"] and done < cfg["steps"]:
            save_checkpoint(out, student, tok, optimizer, scheduler, stream, done, history, side)
            say(f"\nstopped after step {done} (--stop-at); continue with --resume")
            return {"stopped_at": done}
    say()

    final = evaluate(student, tok, held_out, cfg, os.path.join(eval_dir, f"step{cfg['steps']}.jsonl"), "student",
                     extra=side.eval_extra)
    history.append({"step": cfg["steps"], "who": "student", **final})
    log_main(metrics_path, {"step": cfg["steps"], "eval": {"student": final}})
    save_checkpoint(out, student, tok, optimizer, scheduler, stream, cfg["steps"], history, side)
    summary = {"student_before": next(h for h in history if h["who"] == "student" and h["step"] == 0),
               "student_after": final, "steps": cfg["steps"], "loss": cfg.get("loss", name.lower()),
               "wall_s": round(time.time() - t_run, 1)}
    if teacher is not None:
        summary["teacher"] = next(h for h in history if h["who"] == "teacher")
    if rank == 0:
        json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
        print(format_summary(summary, cfg, name))
    return summary


def format_summary(s: dict, cfg: dict, name: str = "OPD") -> str:
    def row(who, e):
        lo, hi = e["acc/pass@1_ci"]
        return (f"| {who} | {e['acc/pass@1']:.3f} [{lo:.3f}, {hi:.3f}] | {e['len/mean']:.1f} | "
                f"{e['len/truncated_frac']:.3f} | {e['rep/ratio']:.3f} |")
    how = f" with {cfg['loss']} (K={cfg['k']})" if "loss" in cfg else ""
    lines = [f"{name}{how}, {cfg['steps']} steps, {cfg['eval_n']} held-out problems, "
             f"T={cfg['eval_temperature']}, seed {cfg['seed']}, {s['wall_s']} s of training",
             "| model | accuracy (95% CI) | len mean | truncated | repetition |", "|---|---|---|---|---|"]
    if "teacher" in s:
        lines.append(row(f"teacher (with PI: {cfg['pi']})" if cfg.get("pi") else "teacher", s["teacher"]))
    lines += [row("student before", s["student_before"]), row(f"student after {name}", s["student_after"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
