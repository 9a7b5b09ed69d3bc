"""Plumbing shared by every trainer, as plain functions: a run's data, the prompt stream, the
learning-rate schedule, sampling a batch, messages, progress bars and Markdown tables. The config
of a run (presets, flags, resume's config) is config.py; the folder it writes, its lock and owner,
folders.py; checkpoints, checkpoint.py; the rest of the run folder (resume, the metrics log,
summaries) run_folder.py.

What this file is
    train_opd.py, train_opsd.py, train_grpo.py, train_sft.py and tiny_world/build.py each own their
    loop; they call these functions for everything that is not their algorithm. Nothing here knows
    which algorithm runs: no trainer class, no hooks, no trainer's keys. Each script passes in what it
    shows (the monitors of its progress bar, the rows of its final table).
"""

import contextlib
import dataclasses
import hashlib
import math
import sys
import time

import torch
import tqdm

import config
import data
import distributed
import rollout
from errors import UserError

# -----------------------------------------------------------------------------
# A run's data: the examples, their lengths against the context, this process's rows, the step's noise


def load_examples(cfg: dict, which: str) -> list:
    """The training problems (`which="train"`) or the first eval_n held-out ones (`"eval"`): with
    --eval-part, the first of that part's set (docs/protocol.md §2)."""
    name = cfg["data"] if which == "train" else cfg["eval_data"]
    if which == "eval" and cfg.get("eval_part"):
        if name != "synthetic":
            raise UserError(
                f"--eval-part {cfg['eval_part']}: a part of the synthetic task's eval split, but "
                f"--eval-data is {name!r}; drop --eval-part, or use --eval-data synthetic"
            )
        try:
            return data.load_examples(
                "synthetic",
                n=cfg["eval_n"],
                part=cfg["eval_part"],
                hard_frac=cfg["hard_frac"],
                flagged_frac=cfg["flagged_frac"],
            )
        except ValueError as e:
            raise UserError(f"--eval-part {cfg['eval_part']}: {e}") from None
    if name == "synthetic":
        n = 20_000 if which == "train" else cfg["eval_n"]
        return data.load_examples(
            "synthetic",
            n=n,
            split="train" if which == "train" else "eval",
            seed=cfg["seed"],
            hard_frac=cfg["hard_frac"],
            flagged_frac=cfg["flagged_frac"],
        )
    examples = data.load_examples(name, path=cfg["data_path"] if which == "train" else None)
    return examples if which == "train" else examples[: cfg["eval_n"]]


def check_prompt_lengths(limit, prompts: list, max_new_tokens: int, what: str, examples: list = None) -> None:
    """Every prompt (token ids) plus max_new_tokens within the context `limit` (None: no limit);
    a UserError naming the longest offender (its example id and source, when `examples` are given)."""
    if limit is None or not prompts:
        return
    over = [i for i, p in enumerate(prompts) if len(p) + max_new_tokens > limit]
    if over:
        worst = max(over, key=lambda i: len(prompts[i]))
        ex = examples[worst] if examples is not None else None
        where = ""
        if ex is not None:
            where = (
                f" ({ex.where}, example {ex.id!r})" if getattr(ex, "where", "") else f" (example {ex.id!r})"
            )
        room = f" with {max_new_tokens} new tokens" if max_new_tokens else ""
        raise UserError(
            f"{len(over)} of {len(prompts)} {what} do not fit the model's context of {limit} tokens{room}; "
            f"the longest has {len(prompts[worst])}{where}; lower the length cap, or filter long problems "
            "out of the data"
        )


def check_held_out(limit, tok, examples: list, cfg: dict) -> None:
    """The held-out prompts, with the evaluation's length cap, within the context `limit`."""
    check_prompt_lengths(
        limit,
        [data.context_ids(tok, ex) for ex in examples],
        cfg["eval_max_new_tokens"],
        "held-out prompts",
        examples,
    )


def my_rows(batch: list) -> list:
    """This process's share of a batch (every process reads the same stream): all of it in one process."""
    rank, world = distributed.world()
    return batch[rank * len(batch) // world : (rank + 1) * len(batch) // world]


def step_generator(cfg: dict, step: int, device) -> torch.Generator:
    """The sampling noise of a training step, a function of (seed, step): a resumed run draws what
    the uninterrupted one drew."""
    return torch.Generator(device=device).manual_seed(cfg["seed"] * 1_000_003 + step)


# -----------------------------------------------------------------------------
# The prompt stream: deterministic shuffling, resumable iteration


def epoch_order(n: int, seed: int, epoch: int) -> list:
    """A permutation of range(n), a pure function of (seed, epoch): sorted by a hash, so it is
    the same on every machine and Python version."""

    def key(i):
        return hashlib.sha256(f"{seed}:{epoch}:{i}".encode()).digest()

    return sorted(range(n), key=key)


def fingerprint(examples: list) -> str:
    """A short hash of a list of dataclass items (Examples, SFT items): a stream's saved state
    only resumes over the same items."""
    h = hashlib.sha256()
    for ex in examples:
        fields = tuple(
            getattr(ex, f.name) for f in dataclasses.fields(ex) if f.metadata.get("identity", True)
        )
        h.update(repr(fields).encode() + b"\0")
    return h.hexdigest()[:16]


class PromptStream:
    """Endless batches of examples, reshuffled every epoch (`shuffle=False`: file order).

    The state is (seed, epoch, position), so a run that saves `state_dict()` with its checkpoint
    and calls `load_state_dict` on resume sees exactly the batches it would have seen. A batch that
    crosses an epoch boundary is completed from the next epoch's order."""

    def __init__(self, examples: list, batch_size: int, seed: int = 0, shuffle: bool = True):
        if not examples:
            raise ValueError("PromptStream needs at least one example")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.examples, self.batch_size, self.seed, self.shuffle = examples, batch_size, seed, shuffle
        self.epoch, self.position = 0, 0
        self._fingerprint = fingerprint(examples)
        self._order = self._make_order()

    def _make_order(self) -> list:
        n = len(self.examples)
        return epoch_order(n, self.seed, self.epoch) if self.shuffle else list(range(n))

    def __iter__(self):
        return self

    def __next__(self) -> list:
        batch = []
        while len(batch) < self.batch_size:
            if self.position == len(self.examples):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._make_order()
            batch.append(self.examples[self._order[self.position]])
            self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "shuffle": self.shuffle,
            "n": len(self.examples),
            "fingerprint": self._fingerprint,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != len(self.examples) or state["fingerprint"] != self._fingerprint:
            raise ValueError(
                f"this stream state belongs to another dataset ({state['n']} examples, "
                f"fingerprint {state['fingerprint']}; here {len(self.examples)}, "
                f"{self._fingerprint}); resume with the same data and filters"
            )
        self.seed, self.shuffle = state["seed"], state["shuffle"]
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._make_order()


# -----------------------------------------------------------------------------
# Optimisation: AdamW with a linear warm-up and a cosine decay


def optimizer(model, cfg: dict, steps: int) -> tuple:
    """AdamW over the model's trainable parameters (all of them, or a LoRA student's adapters) and
    its schedule over `steps` optimizer steps: linear warm-up over warmup_frac of them, then a cosine
    from lr down to min_lr."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), weight_decay=cfg["weight_decay"]
    )
    return opt, cosine_schedule(opt, steps, cfg["warmup_frac"], cfg["min_lr"] / cfg["lr"])


def cosine_schedule(optimizer, steps: int, warmup_frac: float, min_ratio: float = 0.0):
    warmup = max(1, round(warmup_frac * steps)) if warmup_frac > 0 else 0

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        cos = 0.5 * (1.0 + math.cos(math.pi * min((step - warmup) / max(steps - warmup, 1), 1.0)))
        return cos if min_ratio == 0 else min_ratio + (1.0 - min_ratio) * cos

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Diverged(UserError):
    """A non-finite loss or gradient: the optimizer step is not taken and the run stops, its last
    good checkpoint intact."""


DIVERGED_HINT = (
    "the step was not taken and nothing was saved: ckpt/ holds the last good checkpoint; lower --lr "
    "(or --grad-clip) and start again, or --resume to retry from the checkpoint"
)


def clip_grad_norm(model, max_norm: float) -> float:
    """Clip the gradient's global norm (over every shard under FSDP) at max_norm (0 = no clip); its
    norm. A NaN or infinite norm raises Diverged before any weight changes."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    if not math.isfinite(norm):
        raise Diverged(f"non-finite gradient norm ({norm}); {DIVERGED_HINT}")
    return norm


def check_finite_loss(loss, what: str = "loss") -> None:
    """Diverged for a NaN or infinite loss (before its backward pass)."""
    if not torch.isfinite(loss):
        raise Diverged(f"non-finite {what} ({loss.item()}); {DIVERGED_HINT}")


# -----------------------------------------------------------------------------
# Sampling a batch with the student: rollout.generate, --rollout-batch rows at a time


def chunk_generator(generator: torch.Generator, chunk: int) -> torch.Generator:
    """The sampling noise of rollout chunk `chunk` of a step (--rollout-batch rows each): chunk 0
    draws from the step's generator, chunk c > 0 from one seeded by (the step's seed, c). The draws
    of a chunk do not depend on which process samples it (distributed.py)."""
    if chunk == 0:
        return generator
    return torch.Generator(device=generator.device).manual_seed(generator.initial_seed() + 1_000_033 * chunk)


def sampling_dtype(cfg: dict, model) -> torch.dtype:
    """The dtype the student samples in: --rollout-dtype, or by default bf16 when its training forward
    runs under bf16 autocast (the sampler then computes what training computes, from half the bytes)
    and the weights' own dtype otherwise."""
    if cfg["rollout_dtype"]:
        return config.SAMPLING_DTYPES[cfg["rollout_dtype"]]
    return torch.bfloat16 if cfg["amp"] else next(model.parameters()).dtype


def sample_batch(model, tok, prompts: list, cfg: dict, generator) -> tuple:
    """One response per prompt of this process, --rollout-batch rows at a time (the KV cache is
    rollout_batch x (P + T)), in `sampling_dtype`: per row its ids (EOS included), the sampler's
    log p(y_t) at T = 1, and whether it was truncated."""
    dtype = sampling_dtype(cfg, model)
    rank, world = distributed.world()
    rb = cfg["rollout_batch"] or len(prompts)
    if world > 1 and len(prompts) % rb:  # else a process's chunks would not be whole chunks of the batch
        raise ValueError(f"--rollout-batch {rb} must divide the {len(prompts)} rows of each process")
    responses, logp, truncated = [], [], []
    with distributed.full_weights(model):  # the sampler reads the weights directly
        for c, start in enumerate(range(0, len(prompts), rb)):
            # the chunk's index in the whole batch
            gen = chunk_generator(generator, rank * (len(prompts) // rb) + c)
            ro = rollout.generate(
                model,
                prompts[start : start + rb],
                cfg["max_new_tokens"],
                temperature=cfg["temperature"],
                top_p=cfg["top_p"],
                eos_token_ids=tok.eos_token_ids,
                pad_token_id=tok.pad_token_id,
                generator=gen,
                cuda_graph=cfg["cuda_graph"],
                dtype=dtype,
            )
            for row, ids in enumerate(ro.responses()):
                responses.append(ids)
                logp.append(ro.logp[row, : len(ids)])
                truncated.append(bool(ro.truncated[row]))
    return responses, logp, truncated


@contextlib.contextmanager
def timed(times: dict, phase: str):
    """`with timed(times, "rollout"): ...` adds the block's wall-clock seconds to times["time/rollout_s"]."""
    t0 = time.perf_counter()
    yield
    key = f"time/{phase}_s"
    times[key] = times.get(key, 0.0) + time.perf_counter() - t0


# -----------------------------------------------------------------------------
# Messages and progress bars


def say(*args, **kwargs) -> None:
    """Print a message to stderr from rank 0, between the lines of any progress bar."""
    if distributed.is_main():
        tqdm.tqdm.write(" ".join(str(a) for a in args), file=sys.stderr, **kwargs)


PROGRESS_LINE_S = 30.0  # off a terminal: seconds between two plain progress lines


def progress(iterable=None, total=None, initial: int = 0, desc: str = "", disable: bool = False):
    """Progress on stderr from rank 0: a tqdm bar on a terminal; elsewhere (a log file, CI) a plain
    line such as `OPD: 120/300 (40%) [00:36<00:54, 3.33it/s, loss 0.12]` at most every
    PROGRESS_LINE_S seconds, and a last one at the end when any was printed (a run shorter than
    that prints none)."""
    if disable or not distributed.is_main():
        return tqdm.tqdm(iterable, total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm.tqdm(
            iterable, total=total, initial=initial, desc=desc, file=sys.stderr, dynamic_ncols=True
        )
    return _ProgressLines(iterable, total, initial, desc)


class _ProgressLines:
    """What the trainers use of a tqdm bar (iteration, update, set_postfix_str, close), printed as
    plain lines ending in a newline, which a log keeps one under the other."""

    def __init__(self, iterable, total, initial: int, desc: str):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.n, self.initial, self.desc = iterable, total, initial, initial, desc
        self.postfix, self.with_postfix = "", False
        self.shown = None  # the count of the last line printed
        self.t0 = self.last = time.time()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.with_postfix:  # else the line waits for this step's postfix, which follows
            self.line_if_due()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix, self.with_postfix = s, True
        self.line_if_due()

    def line_if_due(self) -> None:
        if time.time() - self.last >= PROGRESS_LINE_S:
            self.line()

    def close(self) -> None:
        if self.shown is not None and self.shown != self.n:
            self.line()

    def line(self) -> None:
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            count = "{n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}"
        else:
            count = "{n_fmt} [{elapsed}"
        fmt = head + count + ", {rate_fmt}{postfix}]"
        elapsed = time.time() - self.t0
        meter = tqdm.tqdm.format_meter(
            self.n, self.total, elapsed, bar_format=fmt, postfix=self.postfix or None, initial=self.initial
        )
        print(meter, file=sys.stderr, flush=True)
        self.shown, self.last = self.n, time.time()


def postfix(m: dict, keys: tuple) -> str:
    """A bar's postfix: the monitors `keys` ((metric, short name) pairs) present in `m`."""
    return "  ".join(f"{name} {m[key]:.4g}" for key, name in keys if key in m)


# -----------------------------------------------------------------------------
# Markdown tables


def md_table(header: list, rows: list) -> str:
    """A Markdown table: one header row, then one row per list of cells (printed with str())."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def acc_ci(e: dict, digits: int = 3) -> str:
    """pass@1 with its 95 % interval, e.g. `0.533 [0.477, 0.589]`."""
    lo, hi = e["acc/pass@1_ci"]
    return f"{e['acc/pass@1']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def summary_table(title: str, s: dict, cfg: dict, rows: list, columns: tuple = ()) -> str:
    """The table a trainer prints at the end: `title` (what trained), the run's length, evaluation
    and seed, then one row per (label, held-out evaluation) of `rows`; `columns`, (metric, header)
    pairs, add the metrics that matter to the run beside accuracy (`-` where an evaluation lacks one)."""
    cells = lambda e: [
        acc_ci(e),
        *(f"{e[key]:.3f}" if key in e else "-" for key, _ in columns),
        f"{e['len/mean']:.1f}",
        f"{e['len/truncated_frac']:.3f}",
        f"{e['rep/ratio']:.3f}",
    ]
    return (
        f"{title}, {cfg['steps']} steps, {cfg['eval_n']} held-out problems, T={cfg['eval_temperature']}, "
        f"seed {cfg['seed']}, {s['wall_s']} s of training\n"
        + md_table(
            ["model", "accuracy (95% CI)", *(h for _, h in columns), "len mean", "truncated", "repetition"],
            [[who, *cells(e)] for who, e in rows],
        )
    )
