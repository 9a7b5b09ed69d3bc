"""The verdict protocol's partition of the eval split (docs/protocol.md §2): disjoint parts for the
build-time evaluation (B), the choices made before the verdict runs (S) and each seed's evaluation
(E0..E4), and the sets drawn from them.

The eval split itself is task.split_of's. Every expression of it is enumerated (the space task's
generator draws from: one to three operations on 0..9 with no two products in a row, and the hard
products of two numbers in 11..99), sorted into its stratum (two-operation, three-operation,
hard; the thirty one-operation expressions are too few to divide and belong to no set), and put
into a part by a salted hash of its text. A set takes the first expressions of each stratum of
its part in a second hash order: no set is a random draw, and none depends on a seed other than
through its part.

    python -m tiny_world.partition     # the parts' counts, as docs/protocol.md §2 prints them
"""

import functools
import hashlib
import itertools

from tiny_world import task

SALT = "opd-protocol-1:"
MODULUS = 20
STRATA = ("1-op", "2-op", "3-op", "hard")


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def part_of(expr: str) -> str:
    """B (residues 0-1), S (2-4) or E0..E4 (three residues each from 5) of an expression."""
    r = _hash(SALT + expr) % MODULUS
    return "B" if r < 2 else "S" if r < 5 else f"E{(r - 5) // 3}"


PARTS = ("B", "S", "E0", "E1", "E2", "E3", "E4")
HELD_OUT = PARTS[1:]  # the parts a run's held-out set may come from (B is the builds' own)


def order_key(expr: str) -> int:
    """The order within a part: a second salted hash."""
    return _hash(SALT + "order:" + expr)


def _expressions():
    """Every expression task's generator can draw, with its stratum."""
    for k in (1, 2, 3):
        for operands in itertools.product(range(10), repeat=k + 1):
            for ops in itertools.product("+-*", repeat=k):
                if any(a == b == "*" for a, b in zip(ops, ops[1:])):
                    continue  # no a*b*c: every product is a times-table fact
                yield f"{k}-op", "".join(str(x) + o for x, o in zip(operands, ops)) + str(operands[-1])
    for a, b in itertools.product(range(11, 100), repeat=2):
        yield "hard", f"{a}*{b}"


@functools.lru_cache(maxsize=1)
def eval_split() -> dict:
    """stratum -> every eval-split expression of it, in order_key order."""
    out = {s: [] for s in STRATA}
    for stratum, expr in _expressions():
        if task.split_of(expr) == "eval":
            out[stratum].append(expr)
    return {s: sorted(v, key=order_key) for s, v in out.items()}


def counts() -> dict:
    """part -> stratum -> number of eval-split expressions."""
    table = {p: dict.fromkeys(STRATA, 0) for p in PARTS}
    for stratum, exprs in eval_split().items():
        for expr in exprs:
            table[part_of(expr)][stratum] += 1
    return table


# The compositions of docs/protocol.md §2: stratum -> how many, first in order_key order
SETS = {
    "evaluation": {"2-op": 100, "3-op": 200},
    "evaluation-hard": {"2-op": 75, "3-op": 150, "hard": 75},
    "selection": {"2-op": 100, "3-op": 200},
    "build": {"2-op": 80, "3-op": 160},
    "build-hard": {"hard": 60},
}


def draw(part: str, composition: dict) -> list:
    """The expressions of a set: the first composition[stratum] of each stratum of `part`, then
    all of them in order_key order."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    chosen = []
    for stratum, n in composition.items():
        there = [e for e in eval_split()[stratum] if part_of(e) == part]
        if len(there) < n:
            raise ValueError(f"part {part} holds {len(there)} {stratum} expressions, fewer than {n}")
        chosen += there[:n]
    return sorted(chosen, key=order_key)


def problems(part: str, n: int = None, hard_frac: float = 0.0, flagged_frac: float = 0.0) -> list:
    """The first `n` problems (all without `n`) of `part`'s set, as task.problems' fields, in the
    set's order. The set follows docs/protocol.md §2: S's is the selection set; an E part's is the
    ordinary evaluation (`hard_frac` 0), the one with a quarter hard products (0.25), or the
    constitution's (`flagged_frac` 0.25: the ordinary 300, and in each stratum's order positions
    ≡ 0 mod 4 flagged, ≡ 1 mod 4 asked through the lookalike templates in turn)."""
    if (hard_frac, flagged_frac) not in ((0.0, 0.0), (0.25, 0.0), (0.0, 0.25)) or (part == "S" and hard_frac):
        raise ValueError(
            f"a set of the partition holds a quarter hard products (hard_frac 0.25, E parts), a quarter "
            f"flagged requests (flagged_frac 0.25) or neither (docs/protocol.md §2); got part {part}, "
            f"hard_frac {hard_frac}, flagged_frac {flagged_frac}"
        )
    if part not in HELD_OUT:
        raise ValueError(f"a run's held-out set comes from S or E0..E4, got {part!r}")
    composition = SETS["selection" if part == "S" else "evaluation-hard" if hard_frac else "evaluation"]
    fields = []
    for stratum, count in composition.items():
        for i, expr in enumerate(draw(part, {stratum: count})):  # the stratum in its order
            template, flagged = task.PLAIN_TEMPLATE, False
            if flagged_frac and i % 4 == 0:
                template, flagged = task.FLAGGED_TEMPLATE, True
            elif flagged_frac and i % 4 == 1:
                template = task.LOOKALIKE_TEMPLATES[(i // 4) % len(task.LOOKALIKE_TEMPLATES)]
            fields.append(task.problem_fields(expr, template, stratum == "hard", flagged))
    fields.sort(key=lambda f: order_key(f["meta"]["expr"]))
    if n is not None and n > len(fields):
        raise ValueError(f"part {part}'s set holds {len(fields)} problems, fewer than the {n} asked for")
    return fields[:n]


def seed_part(seed: int) -> str:
    """The evaluation part of a report seed (0..4)."""
    if not 0 <= seed <= 4:
        raise ValueError(f"the protocol's evaluation parts serve seeds 0-4, got {seed}")
    return f"E{seed}"


if __name__ == "__main__":
    table = counts()
    print("| part | " + " | ".join(STRATA) + " |")
    print("|---|" + "---|" * len(STRATA))
    for p in PARTS:
        print(f"| {p} | " + " | ".join(f"{table[p][s]:,}" for s in STRATA) + " |")
