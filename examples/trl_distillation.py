"""On-policy distillation inside TRL's DistillationTrainer, with the loss taken from losses.py.

What this file is
    A tutorial for people who already train with TRL: keep TRL's loop (its prompt sampler, its
    on-policy generation, its batch layout, its optimizer and logging) and swap only the loss for
    any entry of `losses.LOSSES`, reduced with `losses.masked_mean`. One subclass,
    `LossesDistillationTrainer`, is the whole change; everything else here builds a run that fits
    on a laptop CPU: the tiny world's student and teacher (docs/tiny_world.md), a transformers
    tokenizer with the same ids as their built-in one, and synthetic arithmetic prompts. Before
    and after training it prints the reverse KL to the teacher on held-out prompts, measured
    outside TRL with the repository's own sampler and scorer.

Command
    pip install -r requirements-trl.txt                  # trl 1.16.0, the version this is tested with
    python examples/trl_distillation.py                  # topk_tail, K = 20 (the tiny preset's loss)
    python examples/trl_distillation.py --loss topk_sg --k 20
    python examples/trl_distillation.py --loss full_rkl --steps 40 --lr 3e-4
    python examples/trl_distillation.py --loss jsd --beta 0.5
    pytest -q tests/test_trl.py                          # the checks against TRL itself

The hook: why `compute_loss`
    DistillationTrainer.compute_loss (the public Trainer hook, `compute_loss(model, inputs,
    return_outputs, num_items_in_batch)`) receives the micro-batch TRL built after its own
    generation: `prompt_ids` (B, P) left-padded, `completion_ids` (B, C) right-padded, and their
    masks. Below it TRL has one more method, `_compute_loss`, but it is private, returns a
    TRL-internal triple (loss, entropy sum, token count) and works on hidden states and the output
    layer's weight, while every loss in losses.py takes logits. Overriding the public hook keeps
    the override on the documented Trainer interface rather than on TRL's internals, and lets the
    models' own forward produce the logits, so any model-specific logit scaling or soft-capping
    is applied by the model itself.

Our alignment, in TRL's batch
    input = [prompt | completion]; the logits at column t predict token t + 1, so the C columns
    that predict the completion are P - 1 ... P + C - 2; prompt and padding are masked out
    (`completion_mask`, which includes the EOS); the reduction is `masked_mean`: token-mean within
    each sequence, then the mean over sequences. TRL's own loss divides the token sum of the
    global batch by its token count instead (docs/trainers.md, "The reductions side by side").

What it simplifies
    * Text-only batches: a batch with images raises an error. Tokens a tool wrote are masked
      out (`tool_mask`), but no tool runs here.
    * The loss reads the untempered distributions (docs/paper.md §3.10): DistillationConfig's
      `temperature` still sets the sampling temperature, but it no longer divides the logits of
      the loss as TRL's own divergence does. Keep it at 1 for exactly on-policy samples.
    * Losses that need what TRL does not keep (the rollout's log-probs for the clipped
      `sampled_rkl`, an engine's Top-K ids) run in their strictly on-policy form.
    * Full logits of both models for one micro-batch are materialised; at paper scale use
      `losses.chunked_loss` on hidden states instead (docs/paper_scale.md).
"""

import argparse
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # so that `python examples/trl_distillation.py` finds the repository's files

import data  # noqa: E402
import losses  # noqa: E402
import models  # noqa: E402
import rollout  # noqa: E402

try:
    import datasets
    import transformers
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers import models as tokenizer_models
    from trl import DistillationConfig, DistillationTrainer
except ImportError as err:  # the message says what to install, not only what is missing
    raise ImportError(
        f"{err}. This example needs TRL and its dependencies: "
        "pip install -r requirements-trl.txt (run from the repository root)"
    ) from err

TOPK_LOSSES = [name for name in losses.LOSSES if name.startswith("topk")]


# -----------------------------------------------------------------------------
# The change: DistillationTrainer with its loss replaced by losses.LOSSES[name]


class LossesDistillationTrainer(DistillationTrainer):
    """trl.DistillationTrainer whose loss is `masked_mean(losses.LOSSES[loss](...))`.

    Everything else is TRL's: sampling, generation, batching, the teacher's placement, the
    optimizer. `loss_options` go to the loss (`k` for the Top-K losses). For `jsd`, β is TRL's own
    `DistillationConfig.beta`: both use one convention (0 = forward KL, 1 = reverse KL).
    """

    # masked_mean is a mean over one micro-batch: let Trainer divide it by the number of
    # gradient-accumulation steps, so that an optimizer step sees the mean over its whole batch.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, loss: str = "topk_tail", loss_options: dict | None = None, **kwargs):
        if loss not in losses.LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(losses.LOSSES)}")
        loss_options = dict(loss_options or {})
        if "beta" in loss_options:
            raise ValueError(
                "set β of jsd with DistillationConfig(beta=...), TRL's own setting, not in loss_options"
            )
        super().__init__(*args, **kwargs)
        if loss == "jsd":
            loss_options["beta"] = self.args.beta
        self.loss_name, self.loss_options = loss, loss_options

    def aligned_logits(self, model, inputs: dict) -> tuple:
        """(student logits, teacher logits, tokens, mask) at the positions that predict the completion.

        Student logits carry gradients; the teacher's do not. Shapes (B, C, V), (B, C, V), (B, C), (B, C).
        """
        extra = sorted(
            set(inputs)
            - {
                "prompt_ids",
                "prompt_mask",
                "completion_ids",
                "completion_mask",
                "num_items_in_batch",
                "tool_mask",
            }
        )
        if extra:
            raise ValueError(f"this trainer handles text-only batches; the batch also has {extra}")
        prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]  # (B, P), (B, C)
        ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + C)
        attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)  # (B, P + C)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # each row counts its own tokens, as generate did
        C = completion_ids.shape[1]
        # the last C + 1 columns: P - 1 ... P + C - 1
        forward = dict(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=False,
            logits_to_keep=C + 1,
        )
        logits_s = model(**forward).logits[:, :-1]  # (B, C, V): column t predicts completion token t
        self.teacher_model.eval()
        with torch.no_grad():
            logits_t = self.teacher_model(**forward).logits[:, :-1]  # (B, C, V), same ids, same positions
        # Output rows past the tokenizer's ids map to no token (padded vocabularies): leave them out.
        n_ids = len(getattr(self.processing_class, "tokenizer", self.processing_class))
        if n_ids < logits_s.shape[-1]:
            if int(completion_ids.max()) >= n_ids:
                raise ValueError(
                    f"the student sampled id {int(completion_ids.max())}, past the tokenizer's {n_ids} ids; "
                    "keep padded rows out of sampling with DistillationConfig(generation_kwargs="
                    "{'suppress_tokens': [...]})"
                )
            logits_s, logits_t = logits_s[..., :n_ids], logits_t[..., :n_ids]
        mask = inputs["completion_mask"].bool()  # (B, C): completion tokens up to and including the EOS
        if "tool_mask" in inputs:
            mask = mask & inputs["tool_mask"].bool()  # tokens a tool wrote are not the student's
        return logits_s, logits_t, completion_ids, mask

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # num_items_in_batch is TRL's token count of the global batch, the divisor of its own
        # reduction; masked_mean divides each sequence by its own length instead.
        logits_s, logits_t, tokens, mask = self.aligned_logits(model, inputs)
        per_token = losses.LOSSES[self.loss_name](logits_s, logits_t, tokens, **self.loss_options)  # (B, C)
        loss = losses.masked_mean(per_token, mask)
        with torch.no_grad():  # the exact reverse KL on these tokens, logged next to TRL's metrics
            kl = losses.masked_mean(losses.full_rkl(logits_s, logits_t), mask)
        self._metrics["train" if model.training else "eval"]["kl_full"].append(kl.item())
        return (loss, None) if return_outputs else loss


# -----------------------------------------------------------------------------
# The tiny world in the form TRL expects: a transformers tokenizer and a prompt dataset

# Qwen3's chat layout (user turn, assistant header, and the empty think block in non-thinking mode).
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)


def printable_byte_chars() -> list:
    """The character byte-level BPE vocabularies store for each byte 0-255 (GPT-2's table)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, shift = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + shift))
            shift += 1
    return chars


def tiny_hf_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A transformers tokenizer with the tiny tokenizer's ids (byte b = id b, then the five
    specials of models.TINY_SPECIALS in order) and Qwen3's chat layout; left padding for TRL."""
    vocab = {c: b for b, c in enumerate(printable_byte_chars())}
    raw = Tokenizer(tokenizer_models.BPE(vocab=vocab, merges=[]))  # no merges: one id per byte
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    for i in sorted(models.TINY_SPECIALS):  # ids 256-260, added in order
        special = i in models.TINY_SKIPPED  # <think> and </think> are added but not special, as in Qwen3
        token = AddedToken(models.TINY_SPECIALS[i], special=special, normalized=False)
        if special:
            raw.add_special_tokens([token])
        else:
            raw.add_tokens([token])
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )
    if len(tok) != len(models.TINY_SPECIALS) + 256 or tok.convert_tokens_to_ids("</think>") != 260:
        raise RuntimeError("the transformers tokenizer does not reproduce the tiny tokenizer's ids")
    return tok


def prompt_dataset(examples: list) -> datasets.Dataset:
    """TRL's conversational prompt format: one user message per row (the bare problem)."""
    return datasets.Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": ex.prompt}] for ex in examples]}
    )


def load_tiny_pair() -> tuple:
    """(student, teacher) as transformers Qwen3 models in float32 on CPU; the tiny tokenizer is
    replaced by tiny_hf_tokenizer (models.load returns the project's own Tokenizer wrapper)."""
    student, _ = models.load(os.path.join(ROOT, "tiny", "student"), device="cpu", dtype=torch.float32)
    teacher, _ = models.load(os.path.join(ROOT, "tiny", "teacher"), device="cpu", dtype=torch.float32)
    return student, teacher


def loss_options(loss: str, k: int | None, beta: float | None) -> dict:
    """The loss's options from the flags; a flag the chosen loss does not read is an error."""
    if k is not None and loss not in TOPK_LOSSES:
        raise ValueError(f"--k applies to the Top-K losses {TOPK_LOSSES}, not to --loss {loss}")
    if beta is not None and loss != "jsd":
        raise ValueError(f"--beta applies to --loss jsd, not to --loss {loss}")
    return {"k": 20 if k is None else k} if loss in TOPK_LOSSES else {}


def distillation_config(
    output_dir: str,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    max_new_tokens: int,
    beta: float = 0.5,
    grad_accum: int = 1,
    max_grad_norm: float = 1.0,
    seed: int = 0,
) -> DistillationConfig:
    """TRL's settings for the tiny world on CPU. The optimizer is the tiny OPD preset's (docs/paper.md
    §2.4: AdamW, betas (0.9, 0.98), no warm-up, no weight decay, gradients clipped at 1) except for
    the schedule: a constant learning rate, so that a run of a few dozen steps still moves."""
    return DistillationConfig(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch_size,  # prompts per micro-batch, one completion each
        gradient_accumulation_steps=grad_accum,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.98,
        max_grad_norm=max_grad_norm,
        max_completion_length=max_new_tokens,
        temperature=1.0,  # sample from p itself: the rollout is exactly on-policy
        beta=beta,  # TRL's divergence; of ours, only jsd reads it
        chat_template_kwargs={"enable_thinking": False},  # Qwen3's non-thinking prompt (docs/paper.md §2.2)
        bf16=False,  # TRL defaults to bf16; the CPU runs float32
        gradient_checkpointing=False,  # TRL defaults to checkpointing; the tiny models do not need it
        use_cpu=True,
        seed=seed,
        logging_steps=max(1, steps // 5),
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )


# -----------------------------------------------------------------------------
# The measurement, outside TRL: reverse KL to the teacher on the student's own samples


@torch.no_grad()
def heldout_reverse_kl(student, teacher, prompts: list, max_new_tokens: int, seed: int = 0) -> float:
    """masked_mean of the exact KL(p‖q) over held-out responses the student samples at T = 1
    (the same sampling noise every call, so before and after differ only by the weights)."""
    student.eval()
    tiny = models.tiny_tokenizer()
    gen = torch.Generator().manual_seed(seed)
    out = rollout.generate(
        student,
        prompts,
        max_new_tokens,
        temperature=1.0,
        eos_token_ids=tiny.eos_token_ids,
        pad_token_id=tiny.pad_token_id,
        generator=gen,
    )
    responses = out.responses()
    logits_s, mask = rollout.score(student, prompts, responses)  # (B, T, V), (B, T)
    logits_t, _ = rollout.score(teacher, prompts, responses)  # (B, T, V)
    return losses.masked_mean(losses.full_rkl(logits_s, logits_t), mask).item()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--loss",
        default="topk_tail",
        choices=sorted(losses.LOSSES),
        help="per-token loss from losses.LOSSES (default topk_tail, docs/paper.md §3.6)",
    )
    ap.add_argument("--k", type=int, default=None, help="K of the Top-K losses (default 20)")
    ap.add_argument(
        "--beta", type=float, default=None, help="β of --loss jsd (0 forward KL, 1 reverse KL; default 0.5)"
    )
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps")
    ap.add_argument("--batch-size", type=int, default=32, help="prompts per step, one completion each")
    ap.add_argument("--lr", type=float, default=3e-4, help="constant learning rate (the tiny preset's)")
    ap.add_argument(
        "--max-new-tokens", type=int, default=40, help="completion cap (solutions run 10-30 tokens)"
    )
    ap.add_argument("--eval-n", type=int, default=128, help="held-out prompts for the reverse KL")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (the models are tiny: one is fastest)"
    )
    ap.add_argument(
        "--seed", type=int, default=0, help="seeds the prompts, the sampling and the held-out draw"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = loss_options(args.loss, args.k, args.beta)

    student, teacher = load_tiny_pair()
    tok = tiny_hf_tokenizer()
    train = data.load_examples("synthetic", n=args.steps * args.batch_size, split="train", seed=args.seed)
    heldout = data.load_examples("synthetic", n=args.eval_n, split="eval", seed=args.seed)
    heldout_ids = [
        tok.apply_chat_template(
            [{"role": "user", "content": ex.prompt}],
            add_generation_prompt=True,
            enable_thinking=False,
            tokenize=True,
            return_dict=False,
        )
        for ex in heldout
    ]

    before = heldout_reverse_kl(student, teacher, heldout_ids, args.max_new_tokens, seed=args.seed)
    print(f"held-out reverse KL(student‖teacher) before: {before:.4f} nats/token ({args.eval_n} prompts)")
    start = time.time()
    with tempfile.TemporaryDirectory() as out_dir:
        config = distillation_config(
            out_dir,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            beta=0.5 if args.beta is None else args.beta,
        )
        trainer = LossesDistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=config,
            train_dataset=prompt_dataset(train),
            processing_class=tok,
            loss=args.loss,
            loss_options=options,
        )
        trainer.train()
    train_s = time.time() - start
    after = heldout_reverse_kl(trainer.model, teacher, heldout_ids, args.max_new_tokens, seed=args.seed)
    print(
        f"held-out reverse KL(student‖teacher) after {args.steps} steps of {args.loss} {trainer.loss_options}: "
        f"{after:.4f} nats/token ({train_s:.0f} s of training)"
    )
    return {"before": before, "after": after, "train_s": train_s}


if __name__ == "__main__":
    main()
