"""On-policy distillation (OPD): the student writes, the teacher grades every token, one step.

What this file is
    The whole algorithm, top to bottom: a batch of prompts → the student samples one response
    each with its own KV-cache sampler (rollout.generate) → the teacher scores the same response
    tokens after its own context, under no_grad (rollout.score) → the student re-reads prompt +
    response with gradients → losses.LOSSES[--loss] per token → losses.masked_mean → one
    optimizer step per rollout batch (strictly on-policy; --minibatches M splits the batch into M
    steps). `opd_step` is that step; `main` is the loop around it: held-out evaluation every
    --eval-every steps, a checkpoint every --ckpt-every that `--resume` continues exactly (same
    prompts, same sampling noise). The plumbing is in config.py (presets, flags), common.py (data,
    sampling) and run_folder.py (checkpoints, logs); docs/design.md draws the step as data flows.

Paper (docs/paper.md)
    §2.1 OPD; §2.4 the hyperparameters (`--preset paper`); §3 the losses (the paper preset's
    `topk_sg`, K = 20, is Fix 1); §2.5 the collapse monitors logged every step (length, truncation,
    3-gram repetition, hedging words, Top-K mass and overlap, teacher rank of the sampled token).

Commands
    make opd                                   # the tiny world, CPU, offline (--preset tiny)
    python train_opd.py --loss topk_plain --k 5 --out runs/plain5     # Mechanism 2 in the tiny world
    python train_opd.py --preset paper --student Qwen/Qwen3-1.7B --teacher Qwen/Qwen3-8B --data dapo
    python train_opd.py --out runs/x --resume  # continue a killed run, with the flags of its config.json
    python train_opd.py --lora-rank 16 --out runs/opd-lora   # LoRA: adapters of rank 16 (lora.py)
    torchrun --nproc_per_node 8 train_opd.py --preset paper ... --chunk-size 0 --rollout-batch 8
                                               # FSDP2 over 8 GPUs, each its share of the batch (distributed.py)

What it simplifies
    * The student samples with the same weights the optimizer updates (under torchrun, gathered
      from their shards), so the rollout is exactly on-policy (the log-prob mismatch monitor checks it).
    * The sampling temperature / top-p change which tokens are drawn; every loss is computed
      against the model's untempered distribution p (as the paper's code does).
    * No task-reward term: pure distillation, as in every Top-K run of the paper (§2.4).
    * No length gate: every non-empty response enters the loss (the paper code's gate sits above
      its rollout cap, so it is effectively off there too).
"""

import time

import torch

import common
import config
import data
import diagnostics
import distributed
import errors
import eval_math
import folders
import lora
import losses
import models
import rollout
import run_folder
from errors import UserError

# -----------------------------------------------------------------------------
# Config: presets named after where they come from, then the command line on top

# The tiny world (docs/tiny_world.md): shipped checkpoints, synthetic arithmetic, CPU in minutes.
# The loss is the tail-bucket Top-20 (§3.6), not topk_sg: with a 261-token vocabulary the sg loss
# leaves the tail mass free and it leaks, so that sg Top-20 collapses at the learning rates that
# train in minutes (Mechanism 2 in RESULTS.md and RESULTS_tiny1.md).
_TINY = dict(
    student="tiny/student",
    teacher="tiny/teacher",
    data="synthetic",
    data_path=None,
    eval_data="synthetic",
    hard_frac=0.0,
    flagged_frac=0.0,
    loss="topk_tail",
    k=20,
    beta=0.5,
    chunk_size=0,
    minibatches=1,
    steps=300,
    batch_size=64,
    micro_batch=64,
    max_new_tokens=80,
    temperature=1.0,
    top_p=1.0,
    rollout_batch=0,
    lr=3e-4,
    min_lr=0.0,
    warmup_frac=0.0,
    weight_decay=0.0,
    beta1=0.9,
    beta2=0.98,
    grad_clip=1.0,
    grad_checkpointing=False,
    amp=None,
    forward="auto",
    eval_every=50,
    eval_n=300,
    eval_k=1,
    eval_temperature=1.0,
    eval_top_p=1.0,
    eval_max_new_tokens=80,
    ckpt_every=50,
    on_collapse="warn",
)
PRESETS = {
    "tiny": _TINY,
    # The second tiny world (docs/tiny_world2.md): the same settings, tiny2/ checkpoints (two notations).
    "tiny2": dict(_TINY, student="tiny2/student", teacher="tiny2/teacher"),
    # §2.4, "OPD Top-K runs (Qwen3-1.7B)": Adam lr 2e-6, cosine, 10 % warm-up, wd 0.1, betas (0.9, 0.98),
    # 64 prompts x 1 sample, 4096 tokens, T = 1.0, top-p 0.95, 1000 rollouts; in-training evaluation at
    # T = 0.6, top-p 0.95 every 10 rollouts (its length cut from the paper code's 16,384 to 8,192 to keep
    # evaluation affordable). For one 80 GB GPU: micro-batches of 4, gradient checkpointing, the chunked
    # loss and 16 rows sampled at a time (docs/paper_scale.md has the memory plan).
    "paper": dict(
        student="Qwen/Qwen3-1.7B",
        teacher="Qwen/Qwen3-8B",
        data="dapo",
        data_path=None,
        eval_data="math500",
        hard_frac=0.0,
        flagged_frac=0.0,
        loss="topk_sg",
        k=20,
        beta=0.5,
        chunk_size=1024,
        minibatches=1,
        steps=1000,
        batch_size=64,
        micro_batch=4,
        max_new_tokens=4096,
        temperature=1.0,
        top_p=0.95,
        rollout_batch=16,
        lr=2e-6,
        min_lr=0.0,
        warmup_frac=0.1,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.98,
        grad_clip=1.0,
        grad_checkpointing=True,
        amp=None,
        forward="auto",
        eval_every=10,
        eval_n=500,
        eval_k=1,
        eval_temperature=0.6,
        eval_top_p=0.95,
        eval_max_new_tokens=8192,
        ckpt_every=50,
        on_collapse="warn",
    ),
}
# Keys that only a preset sets (edit the preset to change them), with their ranges: beta (of jsd: 0
# forward KL, 1 reverse KL); amp (None: the student's training forward in bf16 autocast on CUDA,
# float32 on CPU); the Adam betas, warm-up and weight decay; the
# evaluation's sampling and length cap; hard_frac and flagged_frac (synthetic data: the fractions
# of 2-digit products and of password requests). train_opsd.py's presets set the same keys.
PRESET_RULES = {
    "beta": config.PROB,
    "warmup_frac": config.PROB,
    "weight_decay": config.AT_LEAST_0,
    "beta1": config.BELOW_1,
    "beta2": config.BELOW_1,
    "eval_k": config.AT_LEAST_1,
    "eval_temperature": config.TEMPERATURE_OR_GREEDY,
    "eval_top_p": config.TOP_P,
    "eval_max_new_tokens": config.AT_LEAST_1,
    "hard_frac": config.PROB,
    "flagged_frac": config.PROB,
}
# What a run shows where its outcome alone would read as a failure, said when it starts and under its
# final table (notes): a pitfall of the paper shown on purpose, by its student and teacher or its loss.
SHOWS = {
    ("tiny2/student", "tiny2/teacher"): (
        "a pitfall of the paper, on purpose (§4, teacher choice): tiny2/teacher writes its steps in the "
        "notation tiny2/student does not use, so OPD from this far teacher lowers the student's accuracy "
        "instead of lifting it (Mechanism 1; RESULTS.md's raw-big-tail over three seeds). Fix 2's close "
        "teacher: make grpo WORLD=2, then make recipe WORLD=2"
    )
}
BIASED_LOSSES = {
    "topk_plain": (
        "the biased loss of §3.3, on purpose: mass leaks out of the student's Top-K until the run "
        "collapses (Mechanism 2; the signature under the final table). The paper's fix is topk_sg; in the "
        "tiny worlds its free tail drifts too at minute-scale learning rates, and topk_tail holds (docs/collapse.md)"
    ),
    "topk_fkl": "the teacher-Top-K forward KL of §3.7, biased: it pulls the student's mass into the teacher's Top-K",
}
# the progress bar's monitors (train_opsd.py's too)
PROGRESS = (
    ("loss", "loss"),
    ("kl/full", "kl"),
    ("len/mean", "len"),
    ("len/truncated_frac", "trunc"),
    ("topk/overlap", "overlap"),
)


def notes(cfg: dict) -> list:
    """What the run shows where its outcome would read as a failure (SHOWS, BIASED_LOSSES)."""
    return [t for t in (SHOWS.get((cfg["student"], cfg["teacher"])), BIASED_LOSSES.get(cfg["loss"])) if t]


def final_table(cfg: dict, summary: dict, signature: dict, more: tuple = ()) -> str:
    """What a run prints at its end: the teacher and the student before and after, the collapse
    `signature` of its last steps (diagnostics.collapse_signature) and its notes; `more`, (label,
    evaluation) rows on the same held-out set, go after the student's."""
    table = common.summary_table(
        f"OPD with {cfg['loss']} (K={cfg['k']})",
        summary,
        cfg,
        [
            ("teacher", summary["teacher"]),
            ("student before", summary["student_before"]),
            ("student after OPD", summary["student_after"]),
            *more,
        ],
    )
    collapse = (
        f"collapse signature (§2.5, last 10 steps): student Top-{cfg['k']} mass {signature['mass']:.3f} "
        f"(collapsed below {diagnostics.COLLAPSE_MASS}), truncated {signature['truncated']:.3f} "
        f"(collapsed above {diagnostics.COLLAPSE_TRUNCATED}): "
        + ("COLLAPSED" if signature["collapsed"] else "absent")
    )
    return "\n".join([table, collapse, *("this run shows " + n for n in notes(cfg))])


class CollapseAlarm:
    """The collapse alarm (docs/collapse.md): diagnostics.ALARM_RULE over the run's step records,
    checked after every step. It rings once per run: a warning on the terminal and `alarm/collapse`
    in that step's record. On --resume it reads the records up to the checkpoint first."""

    def __init__(self, cfg: dict, start: int):
        self.cfg = cfg
        self.history = [r for r in run_folder.read_log(cfg["out"])[0] if r["step"] <= start] if start else []
        self.rung = any("alarm/collapse" in r for r in self.history)

    def rings(self, done: int, m: dict) -> bool:
        """Whether the alarm rings at step `done`, whose record is `m` (marked when it does)."""
        self.history.append({"step": done, **m})
        if self.rung or not diagnostics.alarm_rings(self.history, diagnostics.ALARM_RULE):
            return False
        self.rung = True
        m["alarm/collapse"] = 1
        tail = self.history[-5:]
        deficit = sum(1 - r["topk/student_mass"] for r in tail) / len(tail)
        common.say(
            f"COLLAPSE ALARM at step {done}: the student's mass off its own Top-{self.cfg['k']} is "
            f"{deficit:.4f} (5-step mean), the collapse signature forming (docs/collapse.md); "
            + ("the run goes on (--on-collapse warn)" if self.cfg["on_collapse"] == "warn" else "")
        )
        return True

    def stop(self, done: int, m: dict, bar) -> dict:
        """--on-collapse stop: log step `done`'s record, keep ckpt/ as it is (from before the alarm)
        and say how to go on."""
        run_folder.log(self.cfg, {"step": done, **m})
        bar.close()
        out = self.cfg["out"]
        common.say(
            f"the run stops here (--on-collapse stop); {out}/ckpt holds its last checkpoint, from "
            f"before the alarm. To train on from those weights with an unbiased loss, start a new run: "
            f"--student {out}/ckpt --loss topk_tail --out NEW; to go on with this run as it was: "
            f"--out {out} --resume --on-collapse warn"
        )
        folders.unlock(out)
        return {"stopped_at": done, "collapse_alarm": done}


def add_loss_flags(ap) -> None:
    g = ap.add_argument_group("loss (losses.py, docs/paper.md §3)")
    g.add_argument(
        "--loss",
        choices=sorted(losses.LOSSES),
        help="per-token loss (paper: topk_sg, Fix 1; tiny: topk_tail)",
    )
    g.add_argument("--k", type=config.positive_int, help="K of the Top-K losses (paper and tiny: 20)")
    g.add_argument(
        "--chunk-size",
        type=config.nonneg_int,
        help="0: loss on full logits; N > 0: losses.chunked_loss over N tokens at a time (paper scale)",
    )
    g.add_argument(
        "--minibatches",
        type=config.positive_int,
        help="optimizer steps per rollout batch, each on 1/M of its rows (1 = strictly on-policy: "
        "OPD; the paper's OPSD math runs: 2)",
    )
    g.add_argument(
        "--on-collapse",
        choices=("warn", "stop"),
        help="when the collapse alarm rings (docs/collapse.md): warn and go on, or stop with the last "
        "checkpoint from before the alarm (default: warn)",
    )


def add_flags(ap) -> None:
    g = ap.add_argument_group("models and data")
    g.add_argument("--student", help="student: hub id or local folder (tiny: tiny/student)")
    g.add_argument("--teacher", help="teacher: hub id or local folder (tiny: tiny/teacher)")
    g.add_argument(
        "--teacher-dtype",
        choices=sorted(config.SAMPLING_DTYPES),
        help="the precision the frozen teacher is stored and scores in (default: bfloat16 on "
        "CUDA, float32 elsewhere); bfloat16 on a CPU with bf16 matrix instructions scores "
        "faster, at the price of the teacher's log-probs' rounding (make bench-cpu prints "
        "both)",
    )
    config.add_data_flags(g)
    add_loss_flags(ap)
    config.add_rollout_flags(ap)
    config.add_optim_flags(ap)
    config.add_lora_flags(ap)
    config.add_eval_flags(ap)
    config.add_run_flags(ap, out="runs/opd")


def parse_config(argv=None) -> dict:
    """The run's config: a preset with the flags given on top (on --resume: the run's config.json),
    checked (check_config)."""
    return check_config(*config.parse_config(PRESETS, add_flags, argv, __doc__))


def check_config(cfg: dict, typed: set) -> dict:
    """What OPD and OPSD need of a config, checked before any model loads, with the memory knobs
    fitted to the batch (`typed`: the keys a flag set, config.parse_config)."""
    config.check_ranges(cfg, {}, PRESET_RULES)
    config.check_data_path(cfg)
    config.check_lora(cfg, typed)
    if cfg["amp"] is None:  # bf16 autocast where it pays (CUDA); the weights stay float32
        cfg["amp"] = torch.cuda.is_available()
    world = distributed.planned_world()
    if cfg["batch_size"] % world:
        raise UserError(f"--batch-size {cfg['batch_size']} must be a multiple of the {world} processes")
    if cfg["batch_size"] % (world * cfg["minibatches"]):
        raise UserError(
            f"--minibatches {cfg['minibatches']}: each of the {world} processes' rows of "
            f"--batch-size {cfg['batch_size']} must split into this many equal parts"
        )
    config.fit_micro_batch(cfg, typed, cfg["batch_size"], f"--batch-size {cfg['batch_size']}")
    fit_rollout_batch(cfg, typed, world)
    if world > 1 and cfg["chunk_size"]:
        raise UserError(
            "--chunk-size reads the LM head outside the model's forward, which FSDP does not "
            "gather; under torchrun use --chunk-size 0 (each process holds only its share of the "
            "batch's logits) and a smaller --micro-batch"
        )
    return cfg


def fit_rollout_batch(cfg: dict, typed: set, world: int) -> None:
    """Under torchrun each process samples its rows of the batch --rollout-batch at a time, in whole
    chunks: a preset's value that does not divide them is lowered to the largest that does; a
    --rollout-batch typed that does not is refused."""
    rows, rb = cfg["batch_size"] // world, cfg["rollout_batch"]
    if world == 1 or not rb or rows % rb == 0:
        return
    if "rollout_batch" in typed:
        raise UserError(
            f"--rollout-batch {rb}: must divide the {rows} rows of each process (--batch-size "
            f"{cfg['batch_size']} over {world} processes)"
        )
    cfg["rollout_batch"] = max(d for d in range(1, rb) if rows % d == 0)


def check_k(cfg: dict, tok) -> None:
    """K of a Top-K loss within the vocabulary (known once the tokenizer is read)."""
    if cfg["loss"].startswith("topk") and cfg["k"] > tok.vocab_size:
        raise UserError(
            f"--k {cfg['k']}: larger than the vocabulary ({tok.vocab_size} ids); the Top-K set needs "
            f"K <= {tok.vocab_size}"
        )


# -----------------------------------------------------------------------------
# The algorithm: one OPD step. train_opsd.py calls it with the self-teacher's contexts.


def opd_step(
    student,
    teacher,
    tok,
    student_prompts: list,
    teacher_contexts: list,
    cfg: dict,
    optimizer,
    scheduler,
    generator,
    teacher_view=None,
) -> dict:
    """Rollout → teacher scoring → student forward/backward → one optimizer step (or one per
    --minibatches part of the batch); returns the step's monitors. Under torchrun the prompts are
    this process's rows of the batch. `teacher_view` (lora.view) is how the teacher reads its
    adapters: OPSD's teacher with LoRA is the student itself, its adapters off ("base") or averaged
    ("ema")."""
    device = next(student.parameters()).device
    times = {}
    # 1. The student writes one response per prompt: its own sampler, no gradients.
    with common.timed(times, "rollout"):
        student.eval()
        responses, rollout_logp, truncated = common.sample_batch(
            student, tok, student_prompts, cfg, generator
        )
    # An empty response enters no loss: masked out, not dropped, so that every process runs the same forwards.
    keep = [len(r) > 0 for r in responses]
    # rollout.score's options; at paper scale (--chunk-size) it returns the final hidden states (b, T, d)
    # instead of the logits, so that the loss never makes (b, T, V) logits (chunked_micro_batch_loss)
    forward = dict(return_hidden=cfg["chunk_size"] > 0, impl=cfg["forward"])
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg["amp"])  # fp32 weights, bf16 compute

    student.train()
    sums = new_monitor_sums()
    # --minibatches M: the batch's rows in M parts, one optimizer step each (1 = strictly on-policy;
    # the paper's OPSD math runs sample 128 prompts and take 2 steps of 64).
    n, M = len(responses), cfg["minibatches"]
    for part in range(M):
        part_rows = range(part * n // M, (part + 1) * n // M)
        n_keep = global_kept([keep[i] for i in part_rows])
        optimizer.zero_grad(set_to_none=True)
        for start in range(part_rows.start, part_rows.stop, cfg["micro_batch"]):
            rows = list(range(start, min(start + cfg["micro_batch"], part_rows.stop)))
            resp = [responses[i] for i in rows]
            tokens = rollout.pad_right(resp, tok.pad_token_id, device)  # (b, T) the sampled ids y_t
            # 2. The teacher scores the same tokens after its own context (OPD: the student's prompt), in
            #    the student's precision (an OPSD teacher with the student's weights computes what it would).
            with common.timed(times, "teacher"), torch.no_grad(), amp, lora.view(teacher, teacher_view):
                out_t, mask = rollout.score(teacher, [teacher_contexts[i] for i in rows], resp, **forward)
            mask = mask & torch.tensor([keep[i] for i in rows], device=mask.device)[:, None]  # (b, T)
            # 3. The student re-reads prompt + response with gradients; loss per token, masked_mean, backward.
            with common.timed(times, "student"):
                with amp:
                    out_s, _ = rollout.score(student, [student_prompts[i] for i in rows], resp, **forward)
                # the part's masked_mean = Σ of its micro-batches' means · (their kept rows / its kept rows)
                weight = sum(keep[i] for i in rows) / n_keep
                loss = micro_batch_loss(student, teacher, out_s, out_t, tokens, mask, cfg) * weight
                common.check_finite_loss(loss)
                loss.backward()
            sums["loss"] += loss.item() / M
            micro_batch_monitors(
                sums, student, teacher, out_s, out_t, tokens, mask, [rollout_logp[i] for i in rows], cfg
            )

        # 4. The optimizer step of this part (one per rollout batch by default: strictly on-policy).
        with common.timed(times, "optim"):
            grad_norm = common.clip_grad_norm(student, cfg["grad_clip"])
            optimizer.step()
            scheduler.step()
    return batch_monitors(sums, tok, responses, truncated, keep, times, grad_norm, scheduler)


def micro_batch_loss(student, teacher, out_s, out_t, tokens, mask, cfg: dict):
    """One micro-batch's loss: losses.LOSSES[--loss] per token (b, T), then masked_mean over the
    valid tokens (a scalar, with a gradient into the student). out_s and out_t are the two
    forwards' logits (b, T, V), or at paper scale their final hidden states (b, T, d)."""
    if cfg["chunk_size"]:
        return chunked_micro_batch_loss(student, teacher, out_s, out_t, tokens, mask, cfg)
    logits_s, logits_t = shared_vocab(out_s, out_t)  # (b, T, V)
    per_token = losses.LOSSES[cfg["loss"]](logits_s, logits_t, tokens, **config.loss_options(cfg))
    return losses.masked_mean(per_token, mask)  # (b, T) -> scalar


def chunked_micro_batch_loss(student, teacher, hidden_s, hidden_t, tokens, mask, cfg: dict):
    """micro_batch_loss at paper scale: losses.chunked_loss makes the logits from the final hidden
    states (b, T, d) and the output layers --chunk-size tokens at a time, never all (b, T, V) at once."""
    head_s, head_t = output_layers(student, teacher)  # (V, d) each
    opts = dict(chunk_size=cfg["chunk_size"], **config.loss_options(cfg))
    loss, _ = losses.chunked_loss(cfg["loss"], hidden_s, head_s, hidden_t, head_t, tokens, mask, **opts)
    return loss


def shared_vocab(logits_s, logits_t) -> tuple:
    """The two models' logits (..., V) cut to the ids both have: padded embedding rows (Qwen2.5) map to
    no token."""
    V = min(logits_s.shape[-1], logits_t.shape[-1])
    return logits_s[..., :V], logits_t[..., :V]


def output_layers(student, teacher) -> tuple:
    """The student's and the teacher's output layers (V, d), cut to the ids both have."""
    V = min(student.lm_head.weight.shape[0], teacher.lm_head.weight.shape[0])
    return student.lm_head.weight[:V], teacher.lm_head.weight[:V]


def global_kept(keep: list) -> float:
    """The kept rows per process over all processes: the global masked_mean divides by it (FSDP
    averages the processes' gradients)."""
    world = distributed.world()[1]
    return max(distributed.all_sum(sum(keep)) / world, 1 / world)


# -----------------------------------------------------------------------------
# Monitors (docs/paper.md §2.5): per-token sums over the micro-batches, then over the processes


def new_monitor_sums() -> dict:
    return {
        "loss": 0.0,
        "kl/reverse_est": 0.0,
        "kl/full": 0.0,
        "topk/student_mass": 0.0,
        "topk/teacher_mass": 0.0,
        "topk/overlap": 0.0,
        "topk/teacher_rank": 0.0,
        "_tokens": 0,
        "_mismatch": 0.0,
    }


def micro_batch_monitors(
    sums: dict, student, teacher, out_s, out_t, tokens, mask, rollout_logp: list, cfg: dict
) -> None:
    """add_monitors of one micro-batch, from the two forwards' logits (b, T, V); at paper scale
    (out_* the final hidden states) of its first row only, over that row's own length T_0, whose
    (1, T_0, V) logits are made here."""
    if not cfg["chunk_size"]:
        logits_s, logits_t = shared_vocab(out_s, out_t)
        add_monitors(sums, logits_s.detach(), logits_t, tokens, mask, rollout_logp, cfg["k"])
    else:
        head_s, head_t = output_layers(student, teacher)
        T0 = max(len(rollout_logp[0]), 1)  # as rollout.pad_right pads the row alone
        logits_s, logits_t = out_s[:1, :T0].detach() @ head_s.T, out_t[:1, :T0] @ head_t.T
        add_monitors(sums, logits_s, logits_t, tokens[:1, :T0], mask[:1, :T0], rollout_logp[:1], cfg["k"])


@torch.no_grad()
def add_monitors(sums: dict, logits_s, logits_t, tokens, mask, rollout_logp: list, k: int) -> None:
    """Add one micro-batch's monitors at its valid positions: the sampled-token KL estimate
    log p(y) − log q(y), the exact reverse KL, Top-K masses, overlap and teacher rank, and the
    largest gap between the sampler's log p(y) and the training forward's."""
    # (b, T) training forward's log p(y)
    logp_y = losses.student_logprobs_at(logits_s, tokens[..., None])[..., 0]
    logq_y = losses.teacher_logprobs_at(logits_t, tokens[..., None])[..., 0]
    n = int(mask.sum())
    sums["_tokens"] += n
    sums["kl/reverse_est"] += float((logp_y - logq_y)[mask].sum())
    sums["kl/full"] += float(losses.full_rkl(logits_s, logits_t)[mask].sum())
    st = losses.topk_stats(logits_s, logits_t, k, tokens=tokens)
    for key in ("student_mass", "teacher_mass", "overlap", "teacher_rank"):
        sums[f"topk/{key}"] += float(st[key].float()[mask].sum())
    # (b, T) the sampler's log p(y_t)
    ro_logp = rollout.pad_right(rollout_logp, 0.0, logp_y.device, torch.float32)
    sums["_mismatch"] = max(sums["_mismatch"], float((ro_logp - logp_y)[mask].abs().max()) if n else 0.0)


def batch_monitors(
    sums: dict, tok, responses: list, truncated: list, keep: list, times: dict, grad_norm: float, scheduler
) -> dict:
    """The step's record: every process's sums, responses and worst mismatch combined."""
    world = distributed.world()[1]
    responses, truncated = distributed.gather(responses), distributed.gather(truncated)
    n_resp = sum(len(r) for r in responses)
    n_tok = distributed.all_sum(sums.pop("_tokens"))
    mismatch = distributed.all_max(sums.pop("_mismatch"))
    out = {"loss": distributed.all_sum(sums.pop("loss")) / world}
    out.update({key: distributed.all_sum(v) / max(n_tok, 1) for key, v in sums.items()})
    out.update(diagnostics.response_stats(responses, [tok.decode(r) for r in responses], truncated))
    out.update(times)
    out.update(
        {
            "logp/rollout_vs_train_max_abs": mismatch,
            "grad_norm": grad_norm,
            "lr": scheduler.get_last_lr()[0],
            "tokens": n_resp,
            "tokens_per_s": n_resp / max(sum(times.values()), 1e-9),
            "kept_frac": distributed.all_sum(sum(keep)) / len(responses),
        }
    )
    return out


# -----------------------------------------------------------------------------
# The run: models, data, evaluation at step 0, the training steps, the final evaluation


def main(argv=None) -> dict:
    cfg = parse_config(argv)
    # Everything a user can get wrong is checked before the folder is written and the weights load:
    # the data, the two vocabularies, every prompt against both contexts.
    train, held_out = common.load_examples(cfg, "train"), common.load_examples(cfg, "eval")
    tok, context = models.load_tokenizer(run_folder.student_source(cfg))
    tok_t, context_t = models.load_tokenizer(cfg["teacher"])
    models.check_compatible(tok, tok_t)
    check_k(cfg, tok)
    prompts = [data.context_ids(tok, ex) for ex in train]
    for limit, who in ((context, "student"), (context_t, "teacher")):
        common.check_prompt_lengths(limit, prompts, cfg["max_new_tokens"], f"training prompts ({who})", train)
    common.check_held_out(context, tok, held_out, cfg)

    device = run_folder.start_run(
        cfg,
        "train_opd.py",
        {"the student (--student)": cfg["student"], "the teacher (--teacher)": cfg["teacher"]},
        {"the training data": train, "the held-out set": held_out},
    )
    for note in notes(cfg):
        common.say("this run shows " + note)
    # The student trains in float32 (run_folder.load_student); the teacher is frozen, bf16 on CUDA unless
    # --teacher-dtype says otherwise, and must share the student's vocabulary.
    student, tok = run_folder.load_student(cfg, device, cfg["grad_checkpointing"])
    teacher_dtype = config.SAMPLING_DTYPES[cfg["teacher_dtype"]] if cfg["teacher_dtype"] else None
    teacher, tok_t = models.load(cfg["teacher"], device=device, dtype=teacher_dtype)
    models.check_compatible((student, tok), (teacher, tok_t))
    teacher.requires_grad_(False)
    if distributed.world()[1] > 1:  # FSDP2: the student sharded for training, the teacher for inference
        distributed.shard(student)
        distributed.shard(teacher)
    # resumable; held-out never trained on
    stream = common.PromptStream(train, cfg["batch_size"], seed=cfg["seed"])

    # optimizer steps
    optimizer, scheduler = common.optimizer(student, cfg, cfg["steps"] * cfg["minibatches"])
    start = run_folder.resume(cfg, optimizer, scheduler, stream)
    evaluate = lambda model, name, who="student": eval_math.evaluate_run(
        model, tok, held_out, cfg, name, who
    )[0]
    if start == 0:
        evals = {"teacher": evaluate(teacher, "teacher", "teacher"), "student": evaluate(student, "step0")}
        run_folder.log(cfg, {"step": 0, "eval": evals})
        common.say("step 0: " + ", ".join(f"{who} acc {ev['acc/pass@1']:.3f}" for who, ev in evals.items()))

    ckpt = dict(model=student, tok=tok, optimizer=optimizer, scheduler=scheduler, stream=stream)
    alarm = CollapseAlarm(cfg, start)
    t_run, bar = time.time(), common.progress(total=cfg["steps"], initial=start, desc="OPD")
    for step in range(start, cfg["steps"]):
        batch = common.my_rows(next(stream))  # every process reads the same stream and takes its rows
        prompts = [data.context_ids(tok, ex) for ex in batch]
        m = opd_step(
            student,
            teacher,
            tok,
            prompts,
            prompts,
            cfg,
            optimizer,
            scheduler,
            common.step_generator(cfg, step, device),
        )
        if alarm.rings(step + 1, m) and cfg["on_collapse"] == "stop":
            return alarm.stop(step + 1, m, bar)
        if run_folder.eval_due(cfg, step + 1):
            m["eval"] = {"student": evaluate(student, f"step{step + 1}")}
        if run_folder.end_step(cfg, step + 1, m, bar, ckpt, PROGRESS):
            return {"stopped_at": step + 1}
    bar.close()
    final = evaluate(student, f"step{cfg['steps']}")
    summary = run_folder.end_run(cfg, final, time.time() - t_run, ckpt, cfg["loss"])
    if distributed.is_main():
        print(final_table(cfg, summary, diagnostics.collapse_signature(run_folder.read_log(cfg["out"])[0])))
    return summary


if __name__ == "__main__":
    errors.run(main)
