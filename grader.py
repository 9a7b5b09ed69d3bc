"""The strict math grader: the last \\boxed{} of a response against the gold answer.

Paper: docs/paper.md §2.4 ("Grading"): extract the last `\\boxed{}` ("strict"), then compare after
MATH-style normalisation or sympy equivalence. eval_math.py evaluates models with it; its public
functions (`extract_boxed`, `is_equiv`, `grade`) are a contract (docs/design.md), re-exported there.
docs/grader.md lists the answer forms it accepts, what it refuses on purpose, and its agreement.

    pytest -q tests/test_grader.py tests/test_grader_suite.py tests/test_grader_outside.py

The answer is the content of the LAST \\boxed{} (or \\fbox{}); no box, or an unbalanced last box,
is wrong. `is_equiv` normalises both strings the way MATH graders do (\\dfrac/\\cfrac, spacing,
\\left/\\right, \\text{} and units, degrees, percent, dollars, trailing zeros, thousands separators,
`x=` and `(p,q)=` prefixes, choice letters, base subscripts), then compares structure: one-variable
inequalities as intervals, unions, sets and bare lists as multisets (`a \\pm b` is `a+b, a-b`),
matrices cell by cell, intervals and tuples element by element (bracket types must agree),
equations side by side; plain numbers exactly as fractions; the rest with sympy after a small
hand-written LaTeX -> sympy parser (\\frac, \\sqrt, ^, \\pi, e, i, implicit multiplication, a few
functions) in a worker process killed after a time limit. Model output is parsed, never `eval`'d.

Guarantees: `is_equiv` and `grade` never raise (what the rules cannot handle is "not equal") and
spend about `timeout` seconds at most in sympy per call; answers over _MAX_LEN characters get only
linear-time string rules (a 100,000-digit number is compared digit by digit, never int()'d).

What it simplifies, and the rules it decides by:
- Items and thousands: a comma followed by a space separates items (`45, 135` is two numbers, and
  so is `30^\\circ,150^\\circ`, whose comma follows a degree sign); a comma directly between digit
  groups is a thousands separator (`1,000`, `12,345`), so `45,135` is one number.
- A bare list is the set of solutions a question asks for: any order (`150^\\circ, 30^\\circ` =
  `30, 150`), no item missing or repeated; a tuple in brackets keeps its order.
- Times of day are read on the 24-hour clock: `9 a.m.` = `9:00`, `9 p.m.` = `21:00`, `12 a.m.` =
  `0:00`; `am`/`pm` glued to a bare number (`2am`) stays algebra.
- An unbraced macro argument is one token, as TeX reads it: `\\frac\\pi4` = `\\frac{\\pi}{4}`,
  `\\sqrt 52` = `2\\sqrt5`; a parenthesised argument is its group (`\\sqrt(2)`, `√(2)`).
- The name of the unknown may stand on either side (`2 = x` = `x = 2` = `2`); two equations are
  equal when their differences of sides are a nonzero constant multiple of each other
  (`2x+3y=6` = `4x+6y=12`).
- A unit phrase after a space goes before the end or a comma: one or more unit words, with
  `square`/`cubic` and `per`/`/` (`12 square feet`, `60 miles per hour`, `16 cm/s`); a unit glued
  to the number stays ("5cm" could be algebra).
- Degrees are not radians (30^\\circ is not \\pi/6), except as the argument of a trigonometric
  function (`\\sin 30^\\circ` = `\\frac12`).
- Unicode signs are their LaTeX ones (U+2212 minus, ×, ·, π, ∞, √, ÷); a union of sets is the set
  of their elements.
- Exact before numeric: a constant difference that sympy cannot simplify to 0 is zero only when
  sympy proves it (`Expr.equals`: minimal polynomials, surds); a difference below float resolution
  is still a difference (`2^{2^{-1000}}` is not 1), and an infinity equals only itself.
- Percentages are not converted (50\\% equals 50, not 0.5); decimals must be exact (0.333 is not
  1/3); `2\\frac{1}{2}` alone is a mixed number (5/2); a base subscript may be left out (the question
  names the base), the digits may not.

The LaTeX -> sympy parser and the time-limited sympy worker are latex_sympy.py; both files import
only the standard library (and sympy, in the worker).
"""

import re
import time
from fractions import Fraction
from typing import Optional

from latex_sympy import sympy_equal_timed

# Answers longer than this (MATH answers are under 200 characters) get only the linear-time
# string rules: no structure, no sympy, no int() of long digit strings.
_MAX_LEN = 1000

# -----------------------------------------------------------------------------
# Extracting the final answer

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def extract_boxed(text: str) -> Optional[str]:
    """The content of the last \\boxed{...} or \\fbox{...} (nested braces kept), the token after
    `\\boxed ` in the brace-less form (`\\boxed 5`), or None: no box, or the last box unbalanced
    (a response truncated inside its answer has no answer)."""
    if not text or not isinstance(text, str):
        return None
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    j = matches[-1].end()
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] == "{":
        depth, k = 0, j
        while k < len(text):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                return text[j + 1 : k].strip()
            k += 1
        return None  # unbalanced
    m = re.match(r"[^\s$]+", text[j:]) if j > matches[-1].end() else None
    return m.group().rstrip(".") if m else None


# -----------------------------------------------------------------------------
# Normalisation (MATH style)

_UNIT_WORD = (
    r"(?:units?|cm|centimeters?|centimetres?|mm|millimeters?|km|kilometers?|meters?|metres?|"
    r"inches|inch|ft|feet|foot|yards?|yd|miles?|mi|acres?|gallons?|gal|quarts?|pints?|cups?|"
    r"degrees?|dollars?|cents?|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|"
    r"mph|pounds?|lbs?|ounces?|oz|grams?|kg|kilograms?|tons?|liters?|litres?|ml|"
    r"percent|people|students|ways|times|points)"
)
# a unit phrase: "cm", "square feet", "sq. units", "cubic inches", "miles per hour", "km/h", "m/s^2"
_UNIT = rf"(?:(?:square|sq\.?|cubic|cu\.?)\s+)?{_UNIT_WORD}(?:\s*\^\s*\{{?[23]\}}?)?"
_UNIT_PHRASE = rf"{_UNIT}(?:\s+per\s+{_UNIT}|\s*/\s*(?:{_UNIT}|[a-zA-Z](?:\^\{{?[23]\}}?)?(?![a-zA-Z])))*"
_TEXT_CMD = (
    r"\\(?:text|textnormal|textbf|textit|textrm|textsf|texttt|textup|mbox|hbox|mathrm|"
    r"mathbf|mathit|mathsf|boldsymbol|operatorname)"
)
_TEXT_GROUP = rf"{_TEXT_CMD}\s*\{{([^{{}}]*)\}}"
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# relations and signs become single characters before spaces are removed, so that `\le x` cannot
# fuse into an unknown command `\lex`
_SYMBOLS = [
    (r"\\leq?slant|\\leq?(?![a-zA-Z])|<=", "≤"),
    (r"\\geq?slant|\\geq?(?![a-zA-Z])|>=", "≥"),
    (r"\\lt(?![a-zA-Z])", "<"),
    (r"\\gt(?![a-zA-Z])", ">"),
    (r"\\neq?(?![a-zA-Z])", "≠"),
    (r"\\pm(?![a-zA-Z])", "±"),
    (r"\\mp(?![a-zA-Z])", "∓"),
    (r"\\cup(?![a-zA-Z])", "∪"),
    (r"\\in(?![a-zA-Z])", "∈"),
    (r"\\varnothing|\\emptyset|\\\{\s*\\\}", "∅"),
    (r"\\mathbb\s*\{?\s*R\s*\}?", "(-\\infty,\\infty)"),
]
_RELATIONS = "<>≤≥≠"


def _unwrap(s: str, pairs, rounds: int = 8) -> str:
    for _ in range(rounds):
        s = s.strip()
        for a, b in pairs:
            if len(s) >= len(a) + len(b) and s.startswith(a) and s.endswith(b):
                s = s[len(a) : len(s) - len(b)]
                break
        else:
            return s
    return s


def _one_group_prefix(s: str, k: int) -> Optional[int]:
    """The end (exclusive) of the parenthesised group that opens at s[k], or None if it never closes."""
    depth = 0
    for m in range(k, len(s)):
        depth += {"(": 1, ")": -1}.get(s[m], 0)
        if depth == 0:
            return m + 1
    return None


def _fix_brace_args(s: str, cmd: str, nargs: int) -> str:
    r"""Give `\frac12` / `\sqrt2` / `\frac\pi4` braces: `\frac{1}{2}`, `\sqrt{2}`, `\frac{\pi}{4}`: an
    unbraced argument is one token, a character or a control word, as TeX reads it."""
    out, i = [], 0
    while True:
        j = s.find(cmd, i)
        if j < 0 or s[j + len(cmd) : j + len(cmd) + 1].isalpha():
            if j < 0:
                out.append(s[i:])
                return "".join(out)
            out.append(s[i : j + len(cmd)])
            i = j + len(cmd)
            continue
        out.append(s[i : j + len(cmd)])
        k = j + len(cmd)
        for _ in range(nargs):
            while k < len(s) and s[k] == " ":
                k += 1
            if k >= len(s):
                break
            if s[k] == "{":
                depth, m = 0, k
                while m < len(s):
                    depth += {"{": 1, "}": -1}.get(s[m], 0)
                    if depth == 0:
                        break
                    m += 1
                out.append(s[k : m + 1])
                k = m + 1
            elif s[k] == "[" and cmd == "\\sqrt":  # \sqrt[3]{x}: keep the index, then the radicand
                m = s.find("]", k)
                out.append(s[k : m + 1] if m > 0 else s[k:])
                k = m + 1 if m > 0 else len(s)
                continue
            else:  # one token, as TeX reads it: a character or a control word (\frac\pi4); a
                # parenthesised group as a model means it (\sqrt(2), the Unicode √(2))
                paren = _one_group_prefix(s, k) if s[k] == "(" else None
                tok = s[k:paren] if paren else re.match(r"\\(?:[a-zA-Z]+|.)|.", s[k:], re.S).group()
                out.append("{" + tok + "}")
                k += len(tok)
        i = k


def _strip_zeros(m: re.Match) -> str:
    t = m.group()
    return t.rstrip("0").rstrip(".") if "." in t else t


def _repeating(m: re.Match) -> str:
    """A repeating decimal `a.b\\overline{c}` as the exact fraction it denotes."""
    whole, head, rep = m.group(1) or "0", m.group(2), m.group(3)
    v = (
        int(whole)
        + Fraction(int(head or "0"), 10 ** len(head))
        + Fraction(int(rep), 10 ** len(head) * (10 ** len(rep) - 1))
    )
    return f"\\frac{{{v.numerator}}}{{{v.denominator}}}" if v.denominator != 1 else str(v.numerator)


def _canonical_number(s: str) -> str:
    """`+007.50` -> `7.5`, `-0` -> `0`; other strings unchanged. String work only: safe on numbers
    of any length (int() refuses strings over 4,300 digits)."""
    m = re.fullmatch(r"([+-]?)(\d*)(?:\.(\d*))?", s)
    if not m or not (m.group(2) or m.group(3)):
        return s
    whole, frac = m.group(2).lstrip("0") or "0", (m.group(3) or "").rstrip("0")
    body = f"{whole}.{frac}" if frac else whole
    return body if m.group(1) != "-" or body == "0" else "-" + body


def _normalize_long(s: str) -> str:
    """Linear-time rules only, for answers longer than _MAX_LEN: delimiters, a box, spacing,
    thousands separators, and the canonical form of a plain number."""
    s = _unwrap(s, _DELIMS)
    if _BOX_RE.match(s):
        s = extract_boxed(s) or ""
    s = s.replace("{,}", ",")
    items = re.search(r",\s", s)  # a comma followed by a space separates items, as in normalize_answer
    s = re.sub(r"(?<!\\)\\[,;:! ]|\s+", "", s).rstrip(".")
    if not items and re.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    return _canonical_number(s)


def _drop_trailing_text(s: str) -> str:
    r"""`10\text{ cm}^2` -> `10`, `3\pi\text{ square units}` -> `3\pi`: a trailing \text{} word
    after some math is a unit or a label. Not when it is the whole answer (`\text{Evelyn}`) or
    follows another \text{} (`\text{Sunday}\text{ and }\text{Monday}`)."""
    for _ in range(3):
        m = re.search(rf"{_TEXT_GROUP}(?:\s*\^\s*\{{?[23]\}}?)?\s*$", s)
        if not m or not re.match(r"\s*[a-zA-Z]", m.group(1)):
            return s
        head = s[: m.start()].rstrip()
        if not head or re.search(rf"{_TEXT_GROUP}$", head) or not re.search(r"[\w})\]]$", head):
            return s
        s = head
    return s


# Unicode signs a model may write for the LaTeX ones (U+2212 minus, ×, ·, π, ∞, √, ÷)
_UNICODE = str.maketrans(
    {
        "\u2212": "-",
        "×": "\\times ",
        "·": "\\cdot ",
        "⋅": "\\cdot ",
        "π": "\\pi ",
        "∞": "\\infty ",
        "√": "\\sqrt ",
        "÷": "/",
    }
)
_DEGREE = r"(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree(?![a-zA-Z]))"
# sin 30°, \cos(45^\circ): a trigonometric function of an angle in degrees
_TRIG_DEGREES = re.compile(
    rf"(\\(?:sin|cos|tan|cot|sec|csc))\s*(\()?\s*(\d+(?:\.\d+)?)\s*{_DEGREE}\s*(?(2)\))"
)
# 9 a.m., 9 am, 9AM, 4:20pm, 12:30 P.M. (the marker out of its \text{} by then); not `2am` or
# `12am`, which may be algebra
_TIME_RE = re.compile(
    r"(?<![\d:.])(\d{1,2})(?::([0-5]\d))?"
    r"(?:\s*([aApP])\.\s?[mM]\.?|(?:(?<=:\d\d)|\s+)([aApP])[mM]|\s*([AP])M)(?![a-zA-Z])"
)


def _time_24h(m: re.Match) -> str:
    """`9 a.m.` -> `9:00`, `4:20 p.m.` -> `16:20`, `12 a.m.` -> `0:00`: a time of day on the
    24-hour clock (an hour past 12 is left as written)."""
    hour = int(m.group(1))
    if not 1 <= hour <= 12:
        return m.group()
    pm = (m.group(3) or m.group(4) or m.group(5)) in "pP"
    return f"{hour % 12 + (12 if pm else 0)}:{m.group(2) or '00'}"


def normalize_answer(s: str) -> str:
    """A canonical string for an answer, MATH style (see the file docstring for the rules)."""
    s = str(s).translate(_UNICODE)
    if len(s) > _MAX_LEN:
        return _normalize_long(s)
    # one space for any run of whitespace: every later pattern sees runs of length one
    s = re.sub(r"\s+", " ", s).strip()
    s = _unwrap(s, _DELIMS)
    boxed = extract_boxed(s) if _BOX_RE.match(s) else None
    if boxed is not None:
        s = boxed
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"\\(?:displaystyle|textstyle)", "", s)
    # \left( -> (, \right] -> ], \bigl( -> (
    s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|bigg|Bigg)(?![a-zA-Z])\.?", "", s)
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = re.sub(r"(?<!\\)\\[,;: ]|\\q?quad(?![a-zA-Z])|~", " ", s).replace("\\!", "")
    # a trigonometric function of degrees takes radians: \sin 30^\circ -> \sin(\frac{30\pi}{180})
    s = _TRIG_DEGREES.sub(lambda m: f"{m.group(1)}(\\frac{{{m.group(3)}\\pi}}{{180}})", s)
    # other degree signs go; a space takes their place, so that `30^\circ,150^\circ` stays a list
    s = re.sub(_DEGREE, " ", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")  # percent and money
    s = re.sub(r"^\$", "", s)
    s = s.replace("{,}", ",")  # 1{,}000
    for pattern, symbol in _SYMBOLS:
        s = re.sub(pattern, lambda m, t=symbol: t, s)
    # times of day on the 24-hour clock, before their a.m./p.m. could pass for a unit
    s = re.sub(rf"{_TEXT_CMD}\s*\{{(\s*[aApP]\.?\s?[mM]\.?\s*)\}}", r" \1", s)
    s = _TIME_RE.sub(_time_24h, s)
    # units: a trailing \text{...} after some math, or a unit phrase after a space and before the
    # end or a comma (`12 square feet`, `60 miles per hour`, `300 degrees, 60 degrees`)
    s = _drop_trailing_text(s)
    for _ in range(2):  # \text{Monday} -> Monday, \text{ and } -> " and ", \text{\textbf{A}} -> A
        s = re.sub(_TEXT_GROUP, r"\1", s)
    s = re.sub(rf"(?<=[\d}}])\s+{_UNIT_PHRASE}\s*(?=,|$)", "", s)
    # "1 and 2", "x=1 or x=2" -> "1, 2"
    s = re.sub(r"\s+(?:and|or)\s+", ", ", s)
    s = _fix_brace_args(s, "\\frac", 2)  # while spaces still end control words: `\frac \pi 4`
    s = _fix_brace_args(s, "\\binom", 2)
    s = _fix_brace_args(s, "\\sqrt", 1)
    # thousands separators: commas directly between the digit groups of a number (`1,000`); a
    # comma followed by a space separates items (`45, 135` is two numbers, `1,000, 2,000` two)
    s = ", ".join(
        x.replace(",", "") if re.fullmatch(r"[+-]?\s?\d{1,3}(,\d{3})+(\.\d+)?", x) else x
        for x in (x.strip() for x in re.split(r",\s", s))
    )
    s = re.sub(r"\s+", "", s)
    s = s.replace(",,", ",").strip(",")
    s = re.sub(r"^[a-zA-Z]∈", "", s)  # x \in [1,2]
    # 52_{8} -> 52_8: a base subscript (after \text{} is gone: 52_{\text{8}})
    s = re.sub(r"(?<![a-zA-Z\\])([0-9A-Z]+)_\{(\d+)\}", r"\1_\2", s)
    s = re.sub(r"\\log_(\d)", r"\\log_{\1}", s)  # `\log_2 8` has lost its space: `\log_28`
    s = re.sub(r"\\(?:cdot|times)(?![a-zA-Z])", "*", s)
    s = re.sub(r"(\d*)\.(\d*)\\overline\{(\d+)\}", _repeating, s)  # 0.1\overline{6} -> \frac{1}{6}
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    s = re.sub(r"(?<![\d.])\d+\.\d*", _strip_zeros, s)  # 2.50 -> 2.5, 5.0 -> 5 (one try per run)
    m = re.fullmatch(r"(-?)(\d+)/(\d+)", s)
    if m:
        s = f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}"
    m = re.fullmatch(r"\(?([A-E])\)?", s)  # choice letters: (A), A)
    if m:
        s = m.group(1)
    return _canonical_number(s)


# -----------------------------------------------------------------------------
# Equivalence


def _split_top(s: str, seps: str = ",") -> list:
    """Split at any character of `seps` outside (), [], {}; the separators are dropped."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c in seps:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _one_group(s: str, open_chars: str, close_chars: str) -> bool:
    """True when s is a single bracketed group: its first bracket closes at its last character."""
    if len(s) < 2 or s[0] not in open_chars or s[-1] not in close_chars:
        return False
    depth = 0
    for i, c in enumerate(s):
        depth += 1 if c in "([{" else -1 if c in ")]}" else 0
        if depth == 0 and i < len(s) - 1:
            return False
    return True


def _as_fraction(s: str) -> Optional[Fraction]:
    """Plain numbers as exact fractions: 3, -2.5, \\frac{1}{2}, -\\frac{3}{4}, 2\\frac{1}{2}."""
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", s):
        return Fraction(s)
    m = re.fullmatch(r"([+-]?)\\frac\{(\d+)\}\{(\d+)\}", s)
    if m and int(m.group(3)) != 0:
        return Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) == "-" else 1)
    m = re.fullmatch(r"([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", s)  # mixed number
    if m and int(m.group(4)) != 0:
        v = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return -v if m.group(1) == "-" else v
    return None


def _items(s: str) -> list:
    """The elements of a comma list, `a \\pm b` standing for the two elements a+b and a-b (every
    ± of an element takes the same sign, every ∓ the other)."""
    out = []
    for x in _split_top(s):
        if "±" in x or "∓" in x:
            out += [x.replace("±", "+").replace("∓", "-"), x.replace("±", "-").replace("∓", "+")]
        else:
            out.append(x)
    return out


def _multiset_equiv(xs: list, ys: list, budget: list) -> bool:
    if len(xs) != len(ys):
        return False
    left, rest = list(ys), []
    for x in xs:  # identical strings first: no sympy call for the common case
        if x in left:
            left.remove(x)
        else:
            rest.append(x)
    for x in rest:  # then greedily (equivalence is transitive, so greedy pairing is enough)
        for j, y in enumerate(left):
            if _equiv_norm(x, y, budget):
                del left[j]
                break
        else:
            return False
    return not left


_MATRIX_RE = re.compile(
    r"[(\[]?\\begin\{([pbBvV]?matrix|smallmatrix|array)\}"
    r"(?:(?<=\{array\})\{[^{}]*\})?(.*)\\end\{\1\}[)\]]?"
)


def _matrix_cells(s: str) -> Optional[list]:
    """Rows of cells of a matrix environment (pmatrix, bmatrix, array, ...), or None."""
    m = _MATRIX_RE.fullmatch(s)
    if not m:
        return None
    rows = [row.replace("\\hline", "") for row in m.group(2).split("\\\\")]
    return [row.split("&") for row in rows if row]


_VAR = r"[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?"
_NAME = rf"(?:{_VAR}(?:\({_VAR}\))?|\\[a-zA-Z]+)"  # x, x_1, f(x), \theta


def _drop_names(s: str) -> str:
    """`x=5` -> `5`, `5=x` -> `5`, `f(x)=x^2` -> `x^2`, `(p,q)=(3,2)` -> `(3,2)`, `x=1,x=2` -> `1,2`:
    the answer without the name of the unknown, on whichever side it stands (used only when the
    other answer names nothing)."""
    sides = _split_top(s, "=")
    named = [bool(re.fullmatch(_NAME, x) or re.fullmatch(rf"\({_NAME}(?:,{_NAME})+\)", x)) for x in sides]
    if len(sides) == 2 and named != [True, True] and any(named):
        return sides[1] if named[0] else sides[0]
    items = _split_top(s)
    heads = [re.match(rf"({_NAME})=", x) for x in items]
    if (
        len(items) > 1
        and all(heads)
        and len({h.group(1) for h in heads}) == 1
        and all(x.count("=") == 1 for x in items)
    ):
        return ",".join(x[h.end() :] for x, h in zip(items, heads))
    return s


def _chain(s: str):
    """`1<x≤5` -> (["1", "x", "5"], ["<", "≤"]), written with < and ≤ (a chain written with > and
    ≥ is read from the right); None when s has no relation or mixes directions."""
    parts, ops, depth, start = [], [], 0, 0
    for i, c in enumerate(s):
        depth += 1 if c in "([{" else -1 if c in ")]}" else 0
        if depth == 0 and c in _RELATIONS:
            parts.append(s[start:i])
            ops.append(c)
            start = i + 1
    parts.append(s[start:])
    if not ops or not all(parts):
        return None
    if all(op in ">≥" for op in ops):
        parts, ops = parts[::-1], [{">": "<", "≥": "≤"}[op] for op in ops[::-1]]
    elif not all(op in "<≤" for op in ops) and ops != ["≠"]:
        return None
    return parts, ops


def _is_constant(s: str) -> bool:
    return bool(s) and not re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", s))


def _as_interval(s: str) -> Optional[str]:
    """A one-variable inequality as the interval it describes: `x≤3` -> `(-\\infty,3]`,
    `-1<x≤2` -> `(-1,2]`, `x≠2` -> `(-\\infty,2)∪(2,\\infty)`; None for anything else."""
    parts, ops = _chain(s) or ([], [])
    var = [bool(re.fullmatch(_VAR, p)) for p in parts]
    const = [_is_constant(p) for p in parts]
    left, right, inf = {"<": "(", "≤": "["}, {"<": ")", "≤": "]"}, "\\infty"
    if len(parts) == 3 and var[1] and const[0] and const[2]:
        return f"{left[ops[0]]}{parts[0]},{parts[2]}{right[ops[1]]}"
    if len(parts) != 2 or not any(var[i] and const[1 - i] for i in (0, 1)):
        return None
    v = parts[1] if var[0] and const[1] else parts[0]
    if ops == ["≠"]:
        return f"(-{inf},{v})∪({v},{inf})"
    return f"(-{inf},{v}{right[ops[0]]}" if var[0] and const[1] else f"{left[ops[0]]}{v},{inf})"


def _as_set(s: str) -> Optional[str]:
    """Inequalities (a comma list of them: `x<-1,x>1`) as a union of intervals, or None."""
    intervals = [_as_interval(x) for x in _split_top(s)] if any(c in s for c in _RELATIONS) else [None]
    return "∪".join(intervals) if all(intervals) else None


_BASE_RE = re.compile(r"([0-9A-Z]+)_(\d{1,2})")


def _base_equiv(a: str, b: str) -> Optional[bool]:
    """Numbers with a base subscript: `52_8` vs `42_{10}` by value; `1011_2` vs `1011` by digits
    (the question names the base). None when neither side has a base."""
    ma, mb = _BASE_RE.fullmatch(a), _BASE_RE.fullmatch(b)
    if not ma and not mb:
        return None
    for m in (ma, mb):  # a base from 2 to 36, every digit below it
        base = int(m.group(2)) if m else 10
        if m and not (2 <= base <= 36 and all(int(d, 36) < base for d in m.group(1))):
            return False
    if ma and mb:
        return int(ma.group(1), int(ma.group(2))) == int(mb.group(1), int(mb.group(2)))
    m, other = (ma, b) if ma else (mb, a)
    return bool(re.fullmatch(r"[0-9A-Z]+", other)) and m.group(1).lstrip("0") == other.lstrip("0")


# The equivalence rules of _equiv_norm, one per family of answer forms, in the order it tries them
# (_EQUIV_RULES): each returns the verdict, or None when it does not apply to the two answers.


def _words_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """Words ("Monday") equal only the same word, case aside; letter strings of two or three
    letters may be products ("ab" = "ba") and are left to the later rules."""
    if re.fullmatch(r"[a-zA-Z]{2,}", a) and re.fullmatch(r"[a-zA-Z]{2,}", b):
        if a.lower() == b.lower():
            return True
        if max(len(a), len(b)) >= 4:
            return False
    return None


def _relations_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """One-variable inequalities are the intervals they describe (x≤5, 5≥x, (-\\infty,5]); other
    relations (y>2x+1) are equal when their relations are the same and their sides equivalent."""
    sa, sb = _as_set(a), _as_set(b)
    if sa or sb:
        return _equiv_norm(sa or a, sb or b, budget)
    ca, cb = _chain(a), _chain(b)
    if not (ca or cb):
        return None
    return (
        ca is not None
        and cb is not None
        and ca[1] == cb[1]
        and len(ca[0]) == len(cb[0])
        and all(_equiv_norm(x, y, budget) for x, y in zip(ca[0], cb[0]))
    )


def _is_set(s: str) -> bool:
    return s.startswith("\\{") and _one_group(s[1:], "{", "}")


def _unions_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """Unions of intervals, in any order; a union of sets is the set of all their elements."""
    if "∪" not in a and "∪" not in b:
        return None
    parts = [_split_top(a, "∪"), _split_top(b, "∪")]
    for i, xs in enumerate(parts):
        if len(xs) > 1 and all(_is_set(x) for x in xs):
            items = [y for x in xs for y in _split_top(x[2:-2])]
            parts[i] = ["\\{" + ",".join(dict.fromkeys(items)) + "\\}"]
    return _multiset_equiv(parts[0], parts[1], budget)


def _sets_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """Sets \\{1,2\\}: unordered; a set also equals the bare list of its elements (not a tuple,
    an interval or a matrix)."""
    set_a, set_b = _is_set(a), _is_set(b)
    if not (set_a or set_b):
        return None
    xa, xb = (s[2:-2] if is_set else s for s, is_set in ((a, set_a), (b, set_b)))
    bracketed = any(
        _one_group(s, "([", ")]") or _matrix_cells(s) is not None
        for s, is_set in ((a, set_a), (b, set_b))
        if not is_set
    )
    return not bracketed and _multiset_equiv(_items(xa), _items(xb), budget)


def _matrices_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """Matrices, cell by cell."""
    ma, mb = _matrix_cells(a), _matrix_cells(b)
    if ma is None and mb is None:
        return None
    return (
        ma is not None
        and mb is not None
        and len(ma) == len(mb)
        and all(
            len(r) == len(s) and all(_equiv_norm(x, y, budget) for x, y in zip(r, s)) for r, s in zip(ma, mb)
        )
    )


def _tuples_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """Intervals and tuples: the same brackets, element by element; a tuple never equals a
    non-tuple."""
    ga, gb = _one_group(a, "([", ")]"), _one_group(b, "([", ")]")
    xa, xb = _split_top(a[1:-1]) if ga else None, _split_top(b[1:-1]) if gb else None
    if ga and gb and (len(xa) > 1 or len(xb) > 1):
        return (
            a[0] == b[0]
            and a[-1] == b[-1]
            and len(xa) == len(xb)
            and all(_equiv_norm(x, y, budget) for x, y in zip(xa, xb))
        )
    if (ga and len(xa) > 1) or (gb and len(xb) > 1):
        return False
    return None


def _lists_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """Bare comma lists (several solutions) and ± pairs: unordered."""
    la, lb = _items(a), _items(b)
    if len(la) > 1 or len(lb) > 1:
        return _multiset_equiv(la, lb, budget)
    return None


def _equations_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """Equations: side by side, or differences of sides that are a nonzero constant multiple of
    each other (2x-y=1 vs y=2x-1, x+2y=8 vs y=4-\\frac{x}{2}): the same line, curve or solution."""
    if a.count("=") != 1 or b.count("=") != 1:
        return None
    (a1, a2), (b1, b2) = a.split("="), b.split("=")
    if _equiv_norm(a1, b1, budget) and _equiv_norm(a2, b2, budget):
        return True
    return _sympy_within(f"{a1}-({a2})", f"{b1}-({b2})", budget, proportional=True)


def _numbers_equiv(a: str, b: str, budget: list) -> Optional[bool]:
    """Numbers with a base subscript (_base_equiv); plain numbers exactly, as fractions; a choice
    letter is only equal to the same letter."""
    base = _base_equiv(a, b)
    if base is not None:
        return base
    fa, fb = _as_fraction(a), _as_fraction(b)
    if fa is not None and fb is not None:
        return fa == fb
    if re.fullmatch(r"[A-E]", a) or re.fullmatch(r"[A-E]", b):
        return False
    return None


_EQUIV_RULES = (
    _words_equiv,
    _relations_equiv,
    _unions_equiv,
    _sets_equiv,
    _matrices_equiv,
    _tuples_equiv,
    _lists_equiv,
    _equations_equiv,
    _numbers_equiv,
)


def _equiv_norm(a: str, b: str, budget: list) -> bool:
    """Equivalence of two normalised answers; `budget` is [deadline] for the sympy work. The first
    rule of _EQUIV_RULES that applies decides; answers no rule applies to go to sympy."""
    if not a or not b:
        return False  # an empty answer is never right
    if a == b:
        return True
    if max(len(a), len(b)) > 2 * _MAX_LEN or time.monotonic() > budget[0]:
        return False
    for rule in _EQUIV_RULES:
        verdict = rule(a, b, budget)
        if verdict is not None:
            return verdict
    return _sympy_within(a, b, budget)


def _sympy_within(a: str, b: str, budget: list, proportional: bool = False) -> bool:
    """sympy_equal (or, with `proportional`, a nonzero constant multiple) with what is left of the
    budget. Time spent waiting for another thread's comparison or for the worker to start is not
    this comparison's: it moves the deadline."""
    left = budget[0] - time.monotonic()
    if left <= 0:
        return False
    ok, waited = sympy_equal_timed(a, b, left, proportional)
    budget[0] += waited
    return ok


def is_equiv(pred: Optional[str], gold: Optional[str], timeout: float = 5.0) -> bool:
    """Whether a predicted answer equals the gold one, after MATH normalisation, structural
    comparison, and sympy equivalence bounded by `timeout` seconds in all. Never raises."""
    if pred is None or gold is None:
        return False
    try:
        a, b = normalize_answer(pred), normalize_answer(gold)
        if ("=" in a) != ("=" in b):  # x=5 against 5: drop the name
            a, b = _drop_names(a), _drop_names(b)
        return _equiv_norm(a, b, [time.monotonic() + timeout])
    except Exception:  # noqa: BLE001 -- an answer the rules cannot handle is not a correct one
        return False


def grade(response: str, gold: str, timeout: float = 5.0) -> bool:
    """The strict grader of §2.4: the last boxed answer of the response, compared with the gold."""
    try:
        answer = extract_boxed(response)
    except Exception:  # noqa: BLE001
        return False
    return is_equiv(answer, gold, timeout)
