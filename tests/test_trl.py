"""losses.py inside TRL: examples/trl_distillation.py checked against TRL's own trainer and kernel.

Command: `pytest -q tests/test_trl.py` (CPU, one thread, offline). It needs TRL:
`pip install -r requirements-trl.txt` (trl 1.16.0); without it the module fails to import with
that instruction, it is not skipped.

What is checked, and against what:
  * the batch: the prompts TRL tokenises are, id for id, the tiny world's own chat prompts
    (models.tiny_tokenizer, a tiktoken encoding, not the transformers tokenizer TRL uses), and
    its completion mask covers each completion up to and including the first EOS;
  * the hook: on micro-batches that TRL itself built during `train()` (captured as
    `compute_loss` received them), the loss the trainer computed equals the one recomputed here
    row by row: each sequence alone, unpadded, through the model's plain transformers forward,
    the logits at position t scoring token t + 1, the per-token loss averaged over the
    sequence's completion tokens, then over the sequences (what `losses.masked_mean` defines);
    and the gradient the trainer hands its optimizer (two accumulated micro-batches) equals the
    gradient of that mean over the whole step's batch, parameter by parameter;
  * training: a few trainer steps lower the reverse KL to the teacher on held-out prompts,
    measured here with the repository's sampler and an explicit KL over the vocabulary;
  * TRL's own divergence (`trl.kernels.chunked_divergence.ChunkedDivergenceFunction`, what
    DistillationTrainer's loss runs) on random logits, value and gradient: β = 1 is `full_rkl`,
    β = 0 is `full_fkl`, an interior β is `jsd` at the same β (mixture m = β q + (1 − β) p);
  * TRL's own reduction on a real batch: the token sum over the batch divided by its token count,
    which is not `masked_mean` when completions differ in length.
"""

import copy

import pytest
import torch

try:
    import trl
    from transformers import TrainerCallback
    from trl.kernels.chunked_divergence import ChunkedDivergenceFunction
except ImportError as err:
    raise ImportError(
        f"tests/test_trl.py needs TRL ({err}); install it with "
        "`.venv/bin/pip install -r requirements-trl.txt` from the repository root"
    ) from err

import data
import losses
import models
import rollout
from examples import trl_distillation as ex

MAX_NEW = 40


@pytest.fixture(scope="module")
def pair():
    student, teacher = ex.load_tiny_pair()
    return student, teacher


@pytest.fixture(scope="module")
def tok():
    return ex.tiny_hf_tokenizer()


def row_logits(model, prompt: list, completion: list) -> torch.Tensor:
    """(C, V) logits that predict each completion token, from one unpadded sequence."""
    ids = torch.tensor([prompt + completion])  # (1, P + C)
    logits = model(input_ids=ids).logits[0]  # (P + C, V): row t predicts token t + 1
    return logits[len(prompt) - 1 : len(prompt) + len(completion) - 1]


def unpadded_rows(batch: dict) -> list:
    """[(prompt ids, completion ids)] of a TRL micro-batch, padding removed."""
    rows = []
    for p, pm, c, cm in zip(
        batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], batch["completion_mask"]
    ):
        rows.append((p[pm.bool()].tolist(), c[cm.bool()].tolist()))
    return rows


class Recorder:
    """Wraps a trainer's compute_loss: keeps each micro-batch it receives and the loss it returns."""

    def __init__(self, trainer):
        self.calls, self.inner = [], trainer.compute_loss
        trainer.compute_loss = self

    def __call__(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.inner(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        kept = {k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)}
        self.calls.append((kept, float(loss.detach())))
        return loss


class GradCapture(TrainerCallback):
    """The gradients the optimizer is about to apply (after accumulation, clipping disabled)."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def train_one_step(student, teacher, tok, tmp_path, loss, options, beta=0.5, trainer_class=None):
    """One optimizer step of 2 accumulated micro-batches of 4 prompts; returns the Recorder and the gradients."""
    config = ex.distillation_config(
        str(tmp_path),
        steps=1,
        batch_size=4,
        grad_accum=2,
        lr=1e-4,
        max_new_tokens=MAX_NEW,
        beta=beta,
        max_grad_norm=0.0,
    )
    prompts = ex.prompt_dataset(data.load_examples("synthetic", n=8, split="train", seed=3))
    capture = GradCapture()
    if trainer_class is None:
        trainer = ex.LossesDistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=config,
            train_dataset=prompts,
            processing_class=tok,
            callbacks=[capture],
            loss=loss,
            loss_options=options,
        )
    else:
        trainer = trainer_class(
            model=student,
            teacher_model=teacher,
            args=config,
            train_dataset=prompts,
            processing_class=tok,
            callbacks=[capture],
        )
    recorder = Recorder(trainer)
    trainer.train()
    return recorder, capture.grads


def test_trl_prompts_are_the_tiny_worlds_chat_prompts(pair, tok, tmp_path):
    """The transformers tokenizer TRL reads renders each problem exactly as the tiny models saw it in training."""
    student, teacher = pair
    tiny = models.tiny_tokenizer()
    examples = data.load_examples("synthetic", n=8, split="train", seed=3)
    expected = {tuple(tiny.chat_prompt(e.problem)) for e in examples}
    recorder, _ = train_one_step(copy.deepcopy(student), teacher, tok, tmp_path, "full_rkl", {})
    seen = set()
    eos = set(tiny.eos_token_ids)
    for batch, _ in recorder.calls:
        for prompt, completion in unpadded_rows(batch):
            seen.add(tuple(prompt))
            # the mask stops at the first EOS (kept) or at the length cap
            assert not eos & set(completion[:-1])
            assert completion[-1] in eos or len(completion) == MAX_NEW
        # left-padded prompts, right-padded completions
        assert batch["prompt_mask"][:, -1].all() and batch["completion_mask"][:, 0].all()
    assert seen == expected


@pytest.mark.parametrize(
    "name,options,beta",
    [
        ("topk_sg", {"k": 20}, 0.5),
        ("topk_tail", {"k": 20}, 0.5),
        ("full_rkl", {}, 0.5),
        ("jsd", {}, 0.3),  # β comes from DistillationConfig.beta
        ("sampled_rkl", {}, 0.5),
    ],
)
def test_hook_loss_and_gradient_equal_an_independent_computation(pair, tok, tmp_path, name, options, beta):
    student, teacher = pair
    student = copy.deepcopy(student)
    reference = copy.deepcopy(student)  # the weights before the step, for the recomputation
    recorder, grads = train_one_step(student, teacher, tok, tmp_path, name, options, beta=beta)
    assert len(recorder.calls) == 2  # two accumulated micro-batches of 4
    fn_options = dict(options, beta=beta) if name == "jsd" else options

    step_rows = []
    for batch, trainer_loss in recorder.calls:
        per_sequence = []
        for prompt, completion in unpadded_rows(batch):
            logits_s = row_logits(reference, prompt, completion)  # (C, V)
            with torch.no_grad():
                logits_t = row_logits(teacher, prompt, completion)
            # (C,)
            per_token = losses.LOSSES[name](logits_s, logits_t, torch.tensor(completion), **fn_options)
            per_sequence.append(per_token.mean())
        step_rows += per_sequence
        expected = torch.stack(per_sequence).mean()  # token-mean per sequence, then over sequences
        assert trainer_loss == pytest.approx(expected.item(), rel=1e-4, abs=1e-6)

    # Trainer divides each micro-batch loss by the 2 accumulation steps: the step's gradient is the
    # gradient of the mean over all 8 sequences (each micro-batch holds the same number of them).
    torch.stack(step_rows).mean().backward()
    assert grads is not None and set(grads) == {n for n, _ in reference.named_parameters()}
    for n, p in reference.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-3, atol=1e-6, msg=f"gradient of {n} differs")
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0


@torch.no_grad()
def heldout_kl(student, teacher, prompts: list) -> float:
    """Mean over held-out prompts of the per-token KL(p‖q), on responses the student samples at
    T = 1 with the same noise every call; the KL written out over the vocabulary."""
    tiny = models.tiny_tokenizer()
    out = rollout.generate(
        student.eval(),
        prompts,
        MAX_NEW,
        eos_token_ids=tiny.eos_token_ids,
        pad_token_id=tiny.pad_token_id,
        generator=torch.Generator().manual_seed(11),
    )
    per_sequence = []
    for prompt, completion in zip(prompts, out.responses()):
        logp = torch.log_softmax(row_logits(student, prompt, completion).float(), -1)  # (C, V)
        logq = torch.log_softmax(row_logits(teacher, prompt, completion).float(), -1)
        per_sequence.append((logp.exp() * (logp - logq)).sum(-1).mean())
    return torch.stack(per_sequence).mean().item()


@pytest.mark.parametrize("name,options", [("topk_tail", {"k": 20}), ("full_rkl", {})])
def test_a_few_trainer_steps_lower_the_heldout_reverse_kl(pair, tok, tmp_path, name, options):
    student, teacher = pair
    student = copy.deepcopy(student)
    tiny = models.tiny_tokenizer()
    heldout = data.load_examples("synthetic", n=64, split="eval", seed=5)
    prompts = [tiny.chat_prompt(e.problem) for e in heldout]
    before = heldout_kl(student, teacher, prompts)
    # 30 steps of 16 prompts at lr 1.5e-4 lowered it by 9-15 % for three seeds of prompts and sampling.
    config = ex.distillation_config(
        str(tmp_path), steps=30, batch_size=16, lr=1.5e-4, max_new_tokens=MAX_NEW, seed=5
    )
    trainer = ex.LossesDistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=config,
        processing_class=tok,
        loss=name,
        loss_options=options,
        train_dataset=ex.prompt_dataset(data.load_examples("synthetic", n=30 * 16, split="train", seed=5)),
    )
    trainer.train()
    after = heldout_kl(trainer.model, teacher, prompts)
    assert after < 0.95 * before, f"{name}: held-out reverse KL {before:.4f} -> {after:.4f}"


# ---- TRL's own divergence and reduction ------------------------------------------------------


def trl_divergence(h_s, W_s, h_t, W_t, beta):
    """TRL's per-token divergence, as DistillationTrainer runs it (no bias, T = 1, no logit scaling)."""
    divergence, _entropy = ChunkedDivergenceFunction.apply(h_s, W_s, None, h_t, W_t, None, beta)
    return divergence  # (N,)


@pytest.mark.parametrize("beta,name", [(1.0, "full_rkl"), (0.0, "full_fkl"), (0.3, "jsd"), (0.9, "jsd")])
def test_trl_divergence_is_ours_at_the_same_beta(beta, name):
    g = torch.Generator().manual_seed(0)
    N, H, V = 12, 16, 50
    h_s = torch.randn(N, H, generator=g).requires_grad_(True)
    W_s = (0.5 * torch.randn(V, H, generator=g)).requires_grad_(True)
    h_t, W_t = torch.randn(N, H, generator=g), 0.5 * torch.randn(V, H, generator=g)
    weights = torch.rand(N, generator=g)  # any weighting of the tokens, to compare gradients

    ours_fn = (lambda s, t: losses.jsd(s, t, beta=beta)) if name == "jsd" else losses.LOSSES[name]
    theirs = trl_divergence(h_s, W_s, h_t, W_t, beta)
    gh_theirs, gW_theirs = torch.autograd.grad((weights * theirs).sum(), (h_s, W_s))
    ours = ours_fn(h_s @ W_s.T, h_t @ W_t.T)  # (N,)
    gh_ours, gW_ours = torch.autograd.grad((weights * ours).sum(), (h_s, W_s))

    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gh_theirs, gh_ours, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gW_theirs, gW_ours, rtol=1e-4, atol=1e-6)
    assert ours.min() > 0  # a real divergence, not a vacuous match of zeros
    if name == "jsd":  # the same convention, not its mirror image (β ↔ 1 − β)
        assert not torch.allclose(theirs, losses.jsd(h_s @ W_s.T, h_t @ W_t.T, beta=1 - beta), rtol=1e-2)


def test_trl_reduction_is_a_token_mean_over_the_batch(pair, tok, tmp_path):
    """DistillationTrainer's own loss at β = 1 on a batch it built: Σ KL over all completion tokens
    of the step ÷ their count. Sequences of different lengths weigh differently than in masked_mean."""
    student, teacher = pair
    recorder, _ = train_one_step(
        copy.deepcopy(student),
        teacher,
        tok,
        tmp_path,
        None,
        None,
        beta=1.0,
        trainer_class=trl.DistillationTrainer,
    )
    reference = copy.deepcopy(student)
    tokens_total = sum(int(b["completion_mask"].sum()) for b, _ in recorder.calls)
    compared = 0
    for batch, trainer_loss in recorder.calls:
        assert int(batch["num_items_in_batch"]) == tokens_total  # TRL counts the whole step's tokens
        kl_sum, per_sequence, lengths = 0.0, [], set()
        for prompt, completion in unpadded_rows(batch):
            with torch.no_grad():
                kl = losses.full_rkl(
                    row_logits(reference, prompt, completion), row_logits(teacher, prompt, completion)
                )
            kl_sum += float(kl.sum())
            per_sequence.append(float(kl.mean()))
            lengths.add(len(completion))
        assert trainer_loss == pytest.approx(kl_sum / tokens_total, rel=1e-4)
        if len(lengths) > 1:  # the per-sequence mean (masked_mean) is another number
            ours = sum(per_sequence) / len(per_sequence)
            # over this micro-batch
            token_mean = trainer_loss * tokens_total / int(batch["completion_mask"].sum())
            assert abs(token_mean - ours) > 1e-3 * ours
            compared += 1
    assert compared > 0  # the sampled completions did differ in length
