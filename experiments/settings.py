"""The report's settings: how long each experiment runs, each tiny world's models and presets, and
the OPD variants that Fix 2, Fix 3 and the recipe compare.

What this file is
    Tables that the plan (experiments/report.py) and the claims (experiments/claims.py,
    mechanisms.py, fixes.py) both read. `SCALES` sizes every run (full: the make targets' settings,
    3 seeds; quick: one seed, shorter runs). `WORLDS` names each world's models, presets and
    output files. `COLLAPSE_LOSSES` is Mechanism 2's grid of Top-K losses (docs/collapse.md's
    protocol, with its budget and rates), `LONG_LOSSES` those run past the budget; `OPD_VARIANTS` is each
    OPD run of the fixes as (student, teacher, loss).

Paper (docs/paper.md)
    §3.3–3.5 the Top-K losses of the collapse grid; §4 the fixes and the recipe; §5 the OPSD
    settings (each world's `opsd` presets).

What it simplifies
    * Fix 1 in the OPD variants is the tail-bucket Top-20 (`make opd`'s loss, §3.6): in the tiny
      world sg Top-20 leaks its free tail mass at the learning rates that train in minutes.
    * Fix 2's control teacher ("mid") is one model of about the GRPO teacher's accuracy: in world 1
      the tiny teacher's recipe on a shorter schedule (`mid_steps`); in world 2 the far teacher's
      snapshot nearest each seed's GRPO teacher on a selection set (`python -m tiny_world --match`).
"""

# The collapse protocol (docs/collapse.md, part 2): Σ lr budget B, chosen by the pilot's rule; a
# constant rate of COLLAPSE_LR (and COLLAPSE_LR2 for plain Top-K's onsets), batch 32, an evaluation
# every COLLAPSE_EVAL steps; LONG_LOSSES at the largest K run collapse_long × B.
COLLAPSE_BUDGET = 0.084
COLLAPSE_LR, COLLAPSE_LR2, COLLAPSE_EVAL = 3e-4, 1.5e-4, 40
SCALES = {
    # full: the make-target settings of every experiment, 3 seeds
    "full": dict(
        seeds=(0, 1, 2),
        collapse_ks=(1, 5, 20),
        collapse_budget=COLLAPSE_BUDGET,
        collapse_long=4,
        opd_steps=300,
        opd_batch=64,
        opsd_steps=150,
        opsd_student_steps=1600,
        grpo_steps=400,
        eval_n=300,
        eval_k=4,
        probe_n=300,
        sft_n=3000,
        mid_steps=1300,
        far_steps=3000,
    ),
    # quick: one seed, shorter runs, fewer problems: the same code paths in about 15 minutes on 2 cores
    "quick": dict(
        seeds=(0,),
        collapse_ks=(1, 20),
        collapse_budget=0.024,
        collapse_long=2,
        opd_steps=100,
        opd_batch=32,
        opsd_steps=50,
        opsd_student_steps=100,
        grpo_steps=60,
        eval_n=150,
        eval_k=1,
        probe_n=150,
        sft_n=1000,
        mid_steps=300,
        far_steps=600,
    ),
}
COLLAPSE_LOSSES = ("topk_plain", "topk_sg", "topk_renorm_intersect_sg", "topk_tail")
LONG_LOSSES = ("topk_sg", "topk_tail")

# Each world's models, presets and Fix 2 control (docs/tiny_world.md, docs/tiny_world2.md).
#   opsd: the OPSD presets by role (rule, answer, full, none; world 2 also constitution)
#   rule_format: the evaluation key that shows the shared rule obeyed, and its label
#   recipe_sft: whose traces the recipe's student ("sft-grpo-tail") is SFT'd on. "big" (the SFT
#     student of Fix 3) in the first world, where both teachers write one notation; "grpo" (the
#     recipe's own teacher, a run `sft-grpo/s{s}`) in the second, where the big teacher's traces
#     would teach the student the notation its GRPO teacher does not write (docs/tiny_world2.md).
#   root, out, figs: the runs' folder, the Markdown report, the folder of its PNG plots
#   beside: the world whose report (its `out`) gives a second verdict column, read from that
#     file's claims table
WORLDS = {
    1: dict(
        name="the tiny world",
        student="tiny/student",
        teacher="tiny/teacher",
        preset=(),
        opsd=dict(rule="tiny-rule", answer="tiny-answer", full="tiny-full", none="tiny-none"),
        opsd_student=("tiny-answer-student", "tiny-full-student"),
        rule_format=("format/boxed_only", "bare answers"),
        recipe_sft="big",
        root="runs/report",
        out="RESULTS_tiny1.md",
        figs="results",
    ),
    2: dict(
        name="tiny world 2",
        student="tiny2/student",
        teacher="tiny2/teacher",
        preset=("--preset", "tiny2"),
        opsd=dict(
            rule="tiny2-concise",
            constitution="tiny2-constitution",
            answer="tiny2-answer",
            full="tiny2-full",
            none="tiny2-none",
        ),
        opsd_student=("tiny2-answer-student", "tiny2-full-student"),
        rule_format=("format/concise", "concise responses"),
        recipe_sft="grpo",
        root="runs/report2",
        out="RESULTS.md",
        figs="results/tiny2",
        beside=1,
    ),
}
DEFAULT_WORLD = 2  # its full report is RESULTS.md and writes the README's headline

# OPD variants: (student, teacher, loss); "sft", "grpo", "mid" and the far-O teachers ("bigo",
# "mido") are the report's own runs
OPD_VARIANTS = {
    "raw-big-plain": ("raw", "big", "topk_plain"),  # no fix: the recipe's baseline
    "raw-big-tail": ("raw", "big", "topk_tail"),  # Fix 1 (make opd)
    "sft-big-tail": ("sft", "big", "topk_tail"),  # Fixes 1 + 3 (make sft-opd)
    "raw-grpo-tail": ("raw", "grpo", "topk_tail"),  # Fixes 1 + 2
    "raw-mid-tail": ("raw", "mid", "topk_tail"),  # Fix 2's control: about the GRPO teacher's accuracy
    "sft-grpo-tail": ("sft", "grpo", "topk_tail"),  # the recipe: Fixes 1 + 2 + 3
    "sft-grpo-plain": ("sft", "grpo", "topk_plain"),  # the recipe with the biased loss (leave-one-out)
    # world 2: the far teacher writing the student's notation (docs/protocol.md §6, far-o), final and
    # matched to the GRPO teacher's accuracy: closeness apart from notation
    "raw-bigo-tail": ("raw", "bigo", "topk_tail"),
    "raw-mido-tail": ("raw", "mido", "topk_tail"),
}
FAR_O = ("bigo", "mido")  # teachers of the second world only


def opd_variants(world: int) -> list:
    """The OPD variants run in `world`: all of them in the second, those without a far-O teacher in
    the first (one notation)."""
    return [v for v, (_, teacher, _) in OPD_VARIANTS.items() if world == 2 or teacher not in FAR_O]
