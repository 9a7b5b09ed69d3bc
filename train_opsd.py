"""On-policy self-distillation (OPSD): the model teaches itself, reading privileged information.

What this file is
    OPSD (PAPER.md §5) is OPD where the teacher is the student's own weights and the only thing
    that makes it a better teacher is its context: the student's prompt plus privileged
    information (PI) the student never sees, then the student's own response tokens. Everything
    else is train_opd.py's loop, reused as is (train_opd.run and train_opd.opd_step): this file
    only says who the teacher is (`SelfTeacher`) and which context it reads.

    The paper's verdict (§4 Mechanism 3, §5): OPSD works when the PI is a rule shared by every
    prompt (a system prompt) and fails when it is specific to one instance (its answer, its
    solution). A student that cannot see the PI can only learn one PI-free policy; the best one for
    the reverse KL averaged over the PI it cannot see is the normalised geometric mean of the
    PI-conditioned teachers (losses.geometric_mean_teacher). A shared rule has one teacher, so the
    student can match it; per-instance PI has as many teachers as answers, and the student is left
    between them. `--measure-n` puts numbers on where the trained student sits (measure_aggregation).

Commands
    make opsd                                                # the tiny world: the shared rule (works)
    python train_opsd.py --preset tiny-answer --out runs/x   # per-instance answer hint (fails)
    python train_opsd.py --preset tiny-none --out runs/y     # control: no PI, the loss is ~0
    python train_opsd.py --preset paper --student Qwen/Qwen3-1.7B    # §5 math setting on a GPU

Teacher modes (`--teacher-mode`)
    frozen  the student's initial weights, frozen (the paper's default); reloaded from --student
    live    the student itself as it trains (no copy; its logits read under no_grad)
    ema     a copy updated after every step: θ_T ← d·θ_T + (1 − d)·θ_S with d = --ema-decay,
            saved in the checkpoint so that --resume continues it exactly

What it simplifies
    * No LoRA: the frozen teacher is a second copy of the weights (the tiny world is small; at 1.7B
      in bf16 the copy is 3.4 GB).
    * The paper's extra KL-to-the-initial-model term (coefficient 0.01 in its safety and
      conciseness runs) is not implemented: with the frozen teacher it pulls the same way.
"""
import copy
import dataclasses
import json
import os
import random

import torch

import data
import distributed
import eval_math
import losses
import models
import rollout
import train_opd

# -----------------------------------------------------------------------------
# Config: train_opd.py's flags and loop, these presets, and three OPSD flags

_TINY = dict(train_opd.PRESETS["tiny"], student="tiny/teacher", teacher=None, steps=100, eval_every=25,
             eval_n=300, ckpt_every=25, teacher_mode="frozen", ema_decay=0.99, measure_n=64)
PRESETS = {
    # Shared PI (§5 "works"): the tiny world's rule "Answer with the final result only." as the
    # teacher's system prompt; full-vocabulary reverse KL as in the paper's conciseness and safety runs.
    "tiny-rule": dict(_TINY, pi="system_prompt", loss="full_rkl"),
    # Per-instance PI (§5 "fails on math"): the final answer, or the worked solution; the paper's math
    # loss (Top-50 with a tail bucket, fixed teacher). A quarter of the problems are 2-digit products,
    # which the model cannot compute: there the hint is the whole difference between the contexts.
    "tiny-answer": dict(_TINY, pi="answer_only", loss="topk_tail", k=50, hard_frac=0.25),
    "tiny-full": dict(_TINY, pi="full", loss="topk_tail", k=50, hard_frac=0.25, measure_n=0),
    # The control: the teacher reads exactly the student's context, so it is the student (loss ~0).
    "tiny-none": dict(_TINY, pi="none", loss="topk_tail", k=50),
    # §5 math: Top-50 tail-bucket reverse KL, fixed teacher, lr 2e-6, OpenThoughts problems with their
    # reference answers as PI; the rest as the paper's OPD preset (§2.4).
    "paper": dict(train_opd.PRESETS["paper"], student="Qwen/Qwen3-1.7B", teacher=None, data="openthoughts",
                  pi="answer_only", loss="topk_tail", k=50, teacher_mode="frozen", ema_decay=0.99, measure_n=0),
}
TEACHER_MODES = ("frozen", "live", "ema")


def build_parser():
    ap = train_opd.build_parser(PRESETS, __doc__, teacher_flag=False)
    g = ap.add_argument_group("self-distillation (PAPER.md §5)")
    g.add_argument("--pi", choices=data.PI_MODES, help="the teacher's privileged context (data.context_messages)")
    g.add_argument("--teacher-mode", choices=TEACHER_MODES, help="frozen initial weights (default), live, or ema")
    g.add_argument("--ema-decay", type=float, help="ema mode: θ_T ← d·θ_T + (1 − d)·θ_S after every step")
    g.add_argument("--table", nargs="+", metavar="RUN",
                   help="print the Markdown table of finished OPSD runs (their summary.json) and exit")
    g.add_argument("--measure-n", type=int,
                   help="Mechanism 3: held-out problems on which to measure the student against the "
                        "PI-conditioned teachers before and after training (0 = off)")
    return ap


def resolve_config(argv=None) -> dict:
    cfg = train_opd.resolve_config(argv, parser=build_parser(), presets=PRESETS)
    if not 0.0 <= cfg["ema_decay"] < 1.0:
        raise ValueError(f"--ema-decay must be in [0, 1), got {cfg['ema_decay']}")
    if cfg["measure_n"] and cfg["pi"] == "full":
        raise ValueError("--measure-n: Mechanism 3 is measured for answer_only, system_prompt and none; "
                         "another problem's solution is no plausible PI under --pi full; pass --measure-n 0")
    return cfg


# -----------------------------------------------------------------------------
# The algorithm: the teacher is the student's own weights after a privileged context

def assistant_boundary(tok) -> list:
    """The ids every context ends with: the chat template after the user's text (for Qwen3 in
    non-thinking mode `<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n`)."""
    a, b = tok.chat_prompt("x"), tok.chat_prompt("y")
    n = 0
    while n < min(len(a), len(b)) and a[len(a) - 1 - n] == b[len(b) - 1 - n]:
        n += 1
    return a[len(a) - n:]


def check_alignment(tok, student_contexts: list, teacher_contexts: list) -> None:
    """Raise if a teacher context does not end at the same response boundary as the student's.

    opd_step appends one list of response ids to both contexts, so the response tokens are the same
    by construction; what can differ is where the response starts. A teacher context rendered with
    another template (thinking mode: no empty <think> block; a different generation prompt) makes
    every teacher log-prob answer a different question (OPSD issues #10/#16/#18 of PEERS.md)."""
    boundary = assistant_boundary(tok)
    n = len(boundary)
    for i, (s, t) in enumerate(zip(student_contexts, teacher_contexts)):
        if s[-n:] != boundary or t[-n:] != boundary:
            show = lambda ids: [tok.decode([j], skip_special=False) for j in ids[-(n + 2):]]
            raise ValueError(
                f"OPSD alignment: row {i} does not end at the chat template's assistant boundary "
                f"{tok.decode(boundary, skip_special=False)!r}.\n  student context ends {show(s)}\n  teacher context ends "
                f"{show(t)}\nThe response tokens would follow different boundaries; build both contexts "
                f"with the same template (data.context_ids / tokenizer.chat_prompt).")


class SelfTeacher(train_opd.Teacher):
    """The OPSD teacher: the student's weights (frozen initial / live / EMA) after the PI context."""

    def __init__(self, cfg: dict, student, tok, device):
        self.mode, self.pi, self.decay = cfg["teacher_mode"], cfg["pi"], cfg["ema_decay"]
        self.eval_pi = self.pi
        if self.mode == "frozen":  # the initial checkpoint, also after --resume
            self.model, _ = models.load(cfg["student"], device=device)
        elif self.mode == "live":
            self.model = student
        else:
            self.model = copy.deepcopy(student)
        if self.mode != "live":
            self.model.requires_grad_(False).eval()

    def contexts(self, tok, examples: list, student_prompts: list) -> list:
        ctx = [data.context_ids(tok, ex, self.pi) for ex in examples]
        check_alignment(tok, student_prompts, ctx)
        return ctx

    @torch.no_grad()
    def after_step(self, student) -> None:
        if self.mode == "ema":
            for t, s in zip(self.model.parameters(), student.parameters()):
                t.mul_(self.decay).add_(s.detach().to(t.dtype), alpha=1.0 - self.decay)

    def eval_extra(self, records: list) -> dict:
        return {"format/boxed_only": eval_math.boxed_only_rate([r["response"] for r in records])}

    def state_dict(self) -> dict:
        return {"ema": self.model.state_dict()} if self.mode == "ema" else {}

    def load_state_dict(self, state: dict) -> None:
        if self.mode == "ema":
            self.model.load_state_dict(state["ema"])


# -----------------------------------------------------------------------------
# Mechanism 3 measured: where the student sits among the PI-conditioned teachers

def pi_values(example: data.Example, pool: list, m: int, rng: random.Random) -> list:
    """The example with its own answer hint first, then m - 1 other hints the student cannot tell
    apart from it: the answers of other problems of the same kind (hard or not) from `pool`."""
    kind = example.meta.get("hard")
    others = [e.answer for e in pool if e.meta.get("hard") == kind and e.answer != example.answer]
    others = sorted(set(others))
    rng.shuffle(others)
    return [example] + [dataclasses.replace(example, hint=a) for a in others[:m - 1]]


@torch.no_grad()
def measure_aggregation(student, teacher, tok, examples: list, pi: str, m: int = 8, seed: int = 0,
                        max_new_tokens: int = 80) -> dict:
    """Mechanism 3 in numbers, at every position of the student's own (sampled) responses.

    The teachers are the teacher model after the PI context of each of `m` PI values: the problem's
    own answer (q_1) and m - 1 answers of other problems of its kind, equally likely from where a
    student that cannot compute the answer stands (weights 1/m). A shared rule (or no PI) has one
    value, so every q_i is the same teacher. The `full` mode is not measured: another problem's
    solution is not a plausible PI for this one.
    Returns the token-means of KL(p‖q_1) (the teacher that training pulls towards), KL(p‖g) with g
    the normalised geometric mean (losses.geometric_mean_teacher), the irreducible -log Z, and
    mean_i KL(p‖q_i) = KL(p‖g) - log Z."""
    if pi not in ("answer_only", "system_prompt", "none"):
        raise ValueError(f"measure_aggregation covers answer_only, system_prompt and none, not {pi!r}")
    device = next(student.parameters()).device
    rng = random.Random(seed)
    prompts = [data.context_ids(tok, ex) for ex in examples]
    ro = rollout.generate(student, prompts, max_new_tokens, eos_token_ids=tok.eos_token_ids,
                          pad_token_id=tok.pad_token_id, generator=torch.Generator(device=device).manual_seed(seed))
    sums = {"kl/own_pi": 0.0, "kl/geo_mean": 0.0, "irreducible/-logZ": 0.0, "kl/pi_mean": 0.0}
    n_tok = 0
    shared = pi in ("none", "system_prompt")
    for ex, prompt, resp in zip(examples, prompts, ro.responses()):
        if not resp:
            continue
        variants = [ex] * m if shared else pi_values(ex, examples, m, rng)
        logits_p, mask = rollout.score(student, [prompt], [resp])  # (1, T, V)
        ctx = [data.context_ids(tok, v, pi) for v in variants]
        logits_q, _ = rollout.score(teacher, ctx, [resp] * len(ctx))  # (m, T, V)
        logp = torch.log_softmax(logits_p[0].float(), -1)
        logq = torch.log_softmax(logits_q.float(), -1)
        log_g, log_z = losses.geometric_mean_teacher(logq)  # uniform weights
        kl = lambda a, b: (a.exp() * (a - b)).sum(-1)  # (T,)
        sums["kl/own_pi"] += float(kl(logp, logq[0]).sum())
        sums["kl/geo_mean"] += float(kl(logp, log_g).sum())
        sums["irreducible/-logZ"] += float((-log_z).sum())
        sums["kl/pi_mean"] += float(kl(logp[None], logq).mean(0).sum())
        n_tok += len(resp)
    out = {k: v / max(n_tok, 1) for k, v in sums.items()}
    out.update({"pi_values": 1 if shared else m, "problems": len(examples), "tokens": n_tok})
    return out


# -----------------------------------------------------------------------------
# Plumbing: the run, then the measurement

def main(argv=None) -> dict:
    cfg = resolve_config(argv)
    if cfg["table"]:
        print(table(cfg["table"]))
        return {}
    m = cfg["measure_n"] and distributed.is_main()  # under torchrun, rank 0 alone measures
    before = measure(cfg, cfg["student"]) if m else None  # the initial weights, also on --resume
    summary = train_opd.run(cfg, SelfTeacher, name="OPSD")
    if m and "stopped_at" not in summary:
        after = measure(cfg, os.path.join(cfg["out"], "ckpt"))
        summary["mechanism3"] = {"before": before, "after": after}
        json.dump(summary, open(os.path.join(cfg["out"], "summary.json"), "w"), indent=2)
        print(format_mechanism3(summary["mechanism3"], cfg))
    return summary


def measure(cfg: dict, student_path: str) -> dict:
    """measure_aggregation on `measure_n` held-out problems (hard ones included when --hard-frac)."""
    device = torch.device(cfg["device"]) if cfg["device"] else models.default_device()
    student, tok = models.load(student_path, device=device, dtype=torch.float32)
    teacher, _ = models.load(cfg["student"], device=device, dtype=torch.float32)  # the initial weights
    examples = data.load_examples(cfg["eval_data"], n=cfg["measure_n"], split="eval", seed=cfg["seed"] + 7,
                                  hard_frac=cfg["hard_frac"]) if cfg["eval_data"] == "synthetic" \
        else data.load_examples(cfg["eval_data"])[: cfg["measure_n"]]
    return measure_aggregation(student, teacher, tok, examples, cfg["pi"], seed=cfg["seed"],
                               max_new_tokens=cfg["max_new_tokens"])


def format_mechanism3(mech: dict, cfg: dict) -> str:
    rows = [f"Mechanism 3 (pi={cfg['pi']}, {mech['after']['pi_values']} PI values per problem, "
            f"{mech['after']['problems']} held-out problems, per response token)",
            "| student | KL(p‖q own PI) | KL(p‖geometric mean) | irreducible −log Z | mean over PI of KL(p‖q_i) |",
            "|---|---|---|---|---|"]
    for name in ("before", "after"):
        e = mech.get(name)
        if e:
            rows.append(f"| {name} | {e['kl/own_pi']:.4f} | {e['kl/geo_mean']:.4f} | {e['irreducible/-logZ']:.4f} | "
                        f"{e['kl/pi_mean']:.4f} |")
    return "\n".join(rows)


def table(folders: list) -> str:
    """One Markdown row per finished run: the PI, the seed, the teacher with the PI, the student
    before and after (accuracy with 95% CI, bare-`\\boxed{}` rate, mean length), and where the
    trained student sits among the PI-conditioned teachers (Mechanism 3)."""
    lines = ["| run | PI | loss | seed | steps | teacher with PI: acc / boxed-only / len | student before | "
             "student after | after: KL(p‖q own PI) / KL(p‖geo mean) / −log Z |", "|---|---|---|---|---|---|---|---|---|"]

    def cell(e):
        lo, hi = e["acc/pass@1_ci"]
        return f"{e['acc/pass@1']:.3f} [{lo:.2f}, {hi:.2f}] / {e['format/boxed_only']:.2f} / {e['len/mean']:.1f}"
    for folder in folders:
        path = os.path.join(folder, "summary.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: --table takes finished train_opsd.py run folders")
        s = json.load(open(path))
        c = json.load(open(os.path.join(folder, "config.json")))
        mech = (s.get("mechanism3") or {}).get("after")
        m3 = (f"{mech['kl/own_pi']:.3f} / {mech['kl/geo_mean']:.3f} / {mech['irreducible/-logZ']:.3f}"
              if mech else "-")
        lines.append(f"| {os.path.basename(os.path.normpath(folder))} | {c['pi']} | {c['loss']} | {c['seed']} | "
                     f"{s['steps']} | {cell(s['teacher'])} | {cell(s['student_before'])} | "
                     f"{cell(s['student_after'])} | {m3} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
