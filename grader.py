"""The strict math grader: the last \\boxed{} of a response against the gold answer.

Paper: docs/paper.md §2.4 ("Grading"): extract the last `\\boxed{}` ("strict"), then compare after
MATH-style normalisation or sympy equivalence. eval_math.py evaluates models with it; its public
functions (`extract_boxed`, `is_equiv`, `grade`) are a contract (docs/design.md), re-exported there.

    pytest -q tests/test_eval_math.py        # 205 hand-written (prediction, gold, verdict) cases and more

The answer is the content of the LAST \\boxed{} (or \\fbox{}) of the response; no box, or an
unbalanced last box, is wrong. `is_equiv` normalises both strings the way MATH graders do
(\\dfrac, spacing, \\left/\\right, \\text{} and units, degrees, percent, dollars, trailing zeros,
thousands separators, `x=` prefixes, choice letters), compares intervals and tuples element by
element (bracket types must agree), bare comma lists and sets as multisets, plain numbers exactly
as fractions, and everything else with sympy after a small hand-written LaTeX -> sympy conversion
(\\frac, \\sqrt, ^, \\cdot, \\pi, implicit multiplication, a few functions), in a worker process
killed after a time limit. Model output is parsed, never `eval`'d.

Deliberate simplifications: percentages are not converted (50\\% equals 50, not 0.5); decimals
must be exact (0.333 is not 1/3); `2\\frac{1}{2}` alone is a mixed number (5/2); a unit word must
be separated from its number by a space to be dropped ("5 cm", not "5cm", which could be algebra).
This file imports only the standard library (and sympy, in the worker).
"""
import json
import os
import re
import select
import subprocess
import sys
import threading
from fractions import Fraction
from typing import Optional

# -----------------------------------------------------------------------------
# Extracting the final answer

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def extract_boxed(text: str) -> Optional[str]:
    """The content of the last \\boxed{...} or \\fbox{...} (nested braces kept), the token after
    `\\boxed ` in the brace-less form (`\\boxed 5`), or None: no box, or the last box unbalanced
    (a response truncated inside its answer has no answer)."""
    if not text:
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
                return text[j + 1:k].strip()
            k += 1
        return None  # unbalanced
    m = re.match(r"[^\s$]+", text[j:]) if j > matches[-1].end() else None
    return m.group().rstrip(".") if m else None


# -----------------------------------------------------------------------------
# Normalisation (MATH style)

_UNIT_WORDS = (r"(?:square\s+units?|sq\.?\s+units?|units?|cm|centimeters?|mm|millimeters?|km|"
               r"kilometers?|meters?|inches|inch|ft|feet|foot|yards?|miles?|degrees?|dollars?|"
               r"cents?|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|"
               r"mph|pounds?|lbs?|ounces?|oz|grams?|kg|kilograms?|liters?|litres?|ml|"
               r"percent|people|students|ways|times|points)")
_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|mathit|boldsymbol|operatorname)"


def _unwrap(s: str, pairs) -> str:
    changed = True
    while changed:
        changed = False
        s = s.strip()
        for a, b in pairs:
            if len(s) >= len(a) + len(b) and s.startswith(a) and s.endswith(b):
                s, changed = s[len(a):len(s) - len(b)], True
    return s


def _fix_brace_args(s: str, cmd: str, nargs: int) -> str:
    r"""Give `\frac12` / `\sqrt2` braces: `\frac{1}{2}`, `\sqrt{2}`."""
    out, i = [], 0
    while True:
        j = s.find(cmd, i)
        if j < 0 or s[j + len(cmd):j + len(cmd) + 1].isalpha():
            if j < 0:
                out.append(s[i:])
                return "".join(out)
            out.append(s[i:j + len(cmd)])
            i = j + len(cmd)
            continue
        out.append(s[i:j + len(cmd)])
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
                out.append(s[k:m + 1])
                k = m + 1
            elif s[k] == "[" and cmd == "\\sqrt":  # \sqrt[3]{x}: keep the index, then the radicand
                m = s.find("]", k)
                out.append(s[k:m + 1] if m > 0 else s[k:])
                k = m + 1 if m > 0 else len(s)
                continue
            else:
                out.append("{" + s[k] + "}")
                k += 1
        i = k


def _strip_zeros(m: re.Match) -> str:
    t = m.group()
    return t.rstrip("0").rstrip(".") if "." in t else t


def normalize_answer(s: str) -> str:
    """A canonical string for an answer, MATH style (see the file docstring for the rules)."""
    s = str(s).strip().replace("\n", " ")
    s = _unwrap(s, (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")))
    boxed = extract_boxed(s) if _BOX_RE.match(s) else None
    if boxed is not None:
        s = boxed
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"\\(?:displaystyle|textstyle)", "", s)
    # \left( -> (, \right] -> ], \bigl( -> (
    s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|bigg|Bigg)(?![a-zA-Z])\.?", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    # degrees
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree", "", s)
    # percent and money
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    s = re.sub(r"^\$", "", s)
    s = s.replace("{,}", ",")  # 1{,}000
    # units: a trailing \text{...} after a number, or a bare unit word after a space
    for _ in range(3):
        s = re.sub(rf"(?<=[\d}}])\s*{_TEXT_CMD}\{{\s*[a-zA-Z][^{{}}]*\}}(\^\{{?[23]\}}?)?\s*$", "", s)
        s = re.sub(rf"(?<=[\d}}])\s+{_UNIT_WORDS}(\^\{{?[23]\}}?)?\s*$", "", s)
    # "1 and 2" -> "1,2"
    s = re.sub(rf"{_TEXT_CMD}\{{\s*and\s*\}}|\s+and\s+", ",", s)
    s = re.sub(rf"{_TEXT_CMD}\{{([^{{}}]*)\}}", r"\1", s)  # \text{Monday} -> Monday
    # spacing
    s = re.sub(r"(?<!\\)\\[,;:! ]|\\q?quad(?![a-zA-Z])|~", "", s)
    s = re.sub(r"\s+", "", s)
    s = s.replace(",,", ",").strip(",")
    # x= / \theta= / x\in prefixes, only when a single relation is present
    if s.count("=") == 1:
        m = re.match(r"^(?:[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?|\\[a-zA-Z]+)=", s)
        if m:
            s = s[m.end():]
    s = re.sub(r"^[a-zA-Z]\\in(?![a-zA-Z])", "", s)
    s = _fix_brace_args(s, "\\frac", 2)
    s = _fix_brace_args(s, "\\sqrt", 1)
    s = re.sub(r"\\(?:cdot|times)(?![a-zA-Z])", "*", s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # thousands separators
        s = s.replace(",", "")
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    s = re.sub(r"\d+\.\d*", _strip_zeros, s)  # 2.50 -> 2.5, 5.0 -> 5
    m = re.fullmatch(r"(-?)(\d+)/(\d+)", s)
    if m:
        s = f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}"
    m = re.fullmatch(r"\(?([A-E])\)?", s)  # choice letters: (A), A)
    if m:
        s = m.group(1)
    return s


# -----------------------------------------------------------------------------
# Equivalence

def _split_top(s: str, sep: str = ",") -> list:
    """Split at `sep` outside (), [], {}."""
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if depth == 0 and s.startswith(sep, i):
            parts.append("".join(cur))
            cur, i = [], i + len(sep)
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
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
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        return Fraction(s)
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", s)
    if m and int(m.group(3)) != 0:
        return Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    m = re.fullmatch(r"(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", s)  # mixed number
    if m and int(m.group(4)) != 0:
        v = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return -v if m.group(1) else v
    return None


def _multiset_equiv(xs: list, ys: list, timeout: float) -> bool:
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        for j, y in enumerate(left):
            if _equiv_norm(x, y, timeout):
                del left[j]
                break
        else:
            return False
    return True


def _matrix_cells(s: str) -> Optional[list]:
    m = re.fullmatch(r"\\begin\{([pbvB]?matrix)\}(.*)\\end\{\1\}", s)
    if not m:
        return None
    return [row.split("&") for row in m.group(2).split("\\\\") if row]


def _equiv_norm(a: str, b: str, timeout: float) -> bool:
    """Equivalence of two normalised answers."""
    if a == b:
        return True
    if not a or not b:
        return False
    if re.fullmatch(r"[a-zA-Z]{2,}", a) and re.fullmatch(r"[a-zA-Z]{2,}", b):
        if a.lower() == b.lower():
            return True
        if max(len(a), len(b)) >= 4:
            return False  # words ("Monday"); shorter letter strings may be products ("ab" = "ba")
    # unions of intervals, in order
    if "\\cup" in a or "\\cup" in b:
        xs, ys = _split_top(a, "\\cup"), _split_top(b, "\\cup")
        return len(xs) == len(ys) and all(_equiv_norm(x, y, timeout) for x, y in zip(xs, ys))
    # sets \{1,2\}: unordered
    set_a, set_b = _unwrap(a, (("\\{", "\\}"),)), _unwrap(b, (("\\{", "\\}"),))
    if (set_a != a) or (set_b != b):
        return (set_a != a) == (set_b != b) and _multiset_equiv(
            _split_top(set_a), _split_top(set_b), timeout)
    # matrices, cell by cell
    ma, mb = _matrix_cells(a), _matrix_cells(b)
    if ma is not None or mb is not None:
        return (ma is not None and mb is not None and len(ma) == len(mb)
                and all(len(r) == len(s) and all(_equiv_norm(x, y, timeout) for x, y in zip(r, s))
                        for r, s in zip(ma, mb)))
    # intervals and tuples: same brackets, element by element
    ga, gb = _one_group(a, "([", ")]"), _one_group(b, "([", ")]")
    xa, xb = _split_top(a[1:-1]) if ga else None, _split_top(b[1:-1]) if gb else None
    if ga and gb and (len(xa) > 1 or len(xb) > 1):
        return (a[0] == b[0] and a[-1] == b[-1] and len(xa) == len(xb)
                and all(_equiv_norm(x, y, timeout) for x, y in zip(xa, xb)))
    if (ga and len(xa) > 1) or (gb and len(xb) > 1):
        return False  # a tuple against a non-tuple
    # bare comma lists (several solutions): unordered
    la, lb = _split_top(a), _split_top(b)
    if len(la) > 1 or len(lb) > 1:
        return _multiset_equiv(la, lb, timeout)
    # equations: both sides
    if a.count("=") == 1 and b.count("=") == 1:
        (a1, a2), (b1, b2) = a.split("="), b.split("=")
        return _equiv_norm(a1, b1, timeout) and _equiv_norm(a2, b2, timeout)
    fa, fb = _as_fraction(a), _as_fraction(b)
    if fa is not None and fb is not None:
        return fa == fb
    if re.fullmatch(r"[A-E]", a) or re.fullmatch(r"[A-E]", b):
        return False  # a choice letter is only equal to the same letter
    return sympy_equal(a, b, timeout)


def is_equiv(pred: Optional[str], gold: Optional[str], timeout: float = 5.0) -> bool:
    """Whether a predicted answer equals the gold one, after MATH normalisation, structural
    comparison, and sympy equivalence bounded by `timeout` seconds."""
    if pred is None or gold is None:
        return False
    return _equiv_norm(normalize_answer(pred), normalize_answer(gold), timeout)


def grade(response: str, gold: str, timeout: float = 5.0) -> bool:
    """The strict grader of §2.4: the last boxed answer of the response, compared with the gold."""
    return is_equiv(extract_boxed(response), gold, timeout)


# -----------------------------------------------------------------------------
# LaTeX -> sympy (a small recursive-descent parser: no eval of model output, ever)

class LatexParseError(ValueError):
    pass


_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "theta", "lambda", "mu", "nu", "rho",
          "sigma", "tau", "phi", "omega", "psi", "chi", "eta", "zeta", "xi", "kappa"}
_FUNCS = {"sin", "cos", "tan", "cot", "sec", "csc", "ln", "log", "exp", "arcsin", "arccos",
          "arctan"}
_COMMANDS = {"cdot", "times", "ast", "div", "frac", "sqrt", "binom", "pi", "infty"} | _FUNCS | _GREEK
_TOKEN_RE = re.compile(r"(\d+\.?\d*|\.\d+)|\\([a-zA-Z]+)|([a-zA-Z])|([+\-*/^(){}\[\]!_])|(\S)")
_MAX_EXPONENT = 2000


def _lex(s: str) -> list:
    toks = []
    for m in _TOKEN_RE.finditer(s):
        num, cmd, letter, op, other = m.groups()
        if num is not None:
            toks.append(("num", num))
        elif cmd is not None:
            # spaces are gone after normalisation: "\\pi r" arrives as "\\pir" = \\pi, r
            known = [c for c in _COMMANDS if cmd.startswith(c)]
            if known and cmd not in _COMMANDS:
                cmd_len = max(len(c) for c in known)
                toks.extend(_lex("\\" + cmd[:cmd_len]) + _lex(cmd[cmd_len:]))
                continue
            if cmd in ("cdot", "times", "ast"):
                toks.append(("op", "*"))
            elif cmd == "div":
                toks.append(("op", "/"))
            elif cmd in ("frac", "sqrt", "binom", "pi", "infty") or cmd in _FUNCS:
                toks.append(("cmd", cmd))
            elif cmd in _GREEK:
                toks.append(("sym", cmd))
            else:
                raise LatexParseError(f"unsupported command \\{cmd}")
        elif letter is not None:
            toks.append(("sym", letter))
        elif op is not None:
            toks.append(("op", op))
        else:
            raise LatexParseError(f"unsupported character {other!r}")
    return toks


class _Parser:
    """expr := term (± term)* ; term := unary ((*|/) unary | implicit power)* ;
    unary := ± unary | power ; power := postfix (^ exponent)? ; postfix := atom !*"""

    def __init__(self, toks, sympy):
        self.t, self.i, self.sp = toks, 0, sympy

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            raise LatexParseError(f"expected {value or kind}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self):
        v = self.expr()
        if self.i != len(self.t):
            raise LatexParseError(f"unexpected {self.peek()[1]!r}")
        return v

    def expr(self):
        v = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            rhs = self.term()
            v = v + rhs if op == "+" else v - rhs
        return v

    def _starts_atom(self, tok):
        return tok[0] in ("num", "sym", "cmd") or tok in (("op", "("), ("op", "{"))

    def term(self):
        v = self.unary()
        while True:
            tok = self.peek()
            if tok in (("op", "*"), ("op", "/")):
                self.take()
                rhs = self.unary()
                v = v * rhs if tok[1] == "*" else v / rhs
            elif self._starts_atom(tok):
                v = v * self.power()
            else:
                return v

    def unary(self):
        if self.peek() == ("op", "-"):
            self.take()
            return -self.unary()
        if self.peek() == ("op", "+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self):
        base = self.postfix()
        if self.peek() == ("op", "^"):
            self.take()
            if self.peek() == ("op", "-"):
                self.take()
                exp = -self.postfix()
            else:
                exp = self.postfix()
            if exp.is_Number and abs(exp) > _MAX_EXPONENT and base.is_Number and abs(base) != 1:
                raise LatexParseError("exponent too large")
            return base ** exp
        return base

    def postfix(self):
        v = self.atom()
        while self.peek() == ("op", "!"):
            self.take()
            if v.is_Integer and v > 1000:
                raise LatexParseError("factorial too large")
            v = self.sp.factorial(v)
        return v

    def group(self):
        if self.peek() == ("op", "{"):
            self.take()
            v = self.expr()
            self.take("op", "}")
            return v
        return self.atom()

    def atom(self):
        sp = self.sp
        kind, val = self.take()
        if kind == "num":
            if len(val) > 200:
                raise LatexParseError("number too long")
            return sp.Rational(val)
        if kind == "sym":
            name = val
            if self.peek() == ("op", "_"):  # x_1, x_{12}
                self.take()
                sub = self.take()
                if sub == ("op", "{"):
                    parts = []
                    while self.peek() != ("op", "}"):
                        parts.append(self.take()[1])
                    self.take("op", "}")
                    sub = ("", "".join(parts))
                name = f"{name}_{sub[1]}"
            return sp.Symbol(name)
        if kind == "op" and val in "({":
            v = self.expr()
            self.take("op", ")" if val == "(" else "}")
            return v
        if kind == "cmd":
            if val == "pi":
                return sp.pi
            if val == "infty":
                return sp.oo
            if val == "frac":
                num = self.group()
                return num / self.group()
            if val == "binom":
                n = self.group()
                return sp.binomial(n, self.group())
            if val == "sqrt":
                if self.peek() == ("op", "["):
                    self.take()
                    index = self.expr()
                    self.take("op", "]")
                    return sp.root(self.group(), index)
                return sp.sqrt(self.group())
            fn = {"ln": sp.log, "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan}.get(val)
            fn = fn or getattr(sp, val)
            exp = None
            if self.peek() == ("op", "^"):  # \sin^2 x = (\sin x)^2
                self.take()
                exp = self.postfix()
            if self.peek() in (("op", "("), ("op", "{")):  # \sin(x)^2: the ^2 is the caller's
                arg = self.atom()
            else:
                arg = self.power()
            v = fn(arg)
            return v if exp is None else v ** exp
        raise LatexParseError(f"unexpected {val!r}")


def latex_to_sympy(s: str):
    """A sympy expression for a normalised LaTeX answer; LatexParseError if it is not one."""
    import sympy
    if len(s) > 400:
        raise LatexParseError("answer too long to compare symbolically")
    return _Parser(_lex(s), sympy).parse()


def _sympy_equal_now(a: str, b: str) -> bool:
    """Symbolic equality of two normalised answers, in this process (no time limit)."""
    import sympy
    try:
        x, y = latex_to_sympy(a), latex_to_sympy(b)
    except (LatexParseError, ValueError, TypeError, ZeroDivisionError, AttributeError):
        return False
    if x == y:
        return True
    if x.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan) or y.has(sympy.oo, sympy.zoo, sympy.nan):
        return False
    d = sympy.simplify(x - y)
    if d == 0:
        return True
    if d.free_symbols:
        return False
    v = complex(sympy.N(d, 30))
    return abs(v) <= 1e-9 * max(1.0, abs(complex(sympy.N(y, 30))))


# The sympy worker: a fresh Python process (it imports only this file and sympy) that lives across
# calls and is killed, then restarted on the next call, when a comparison exceeds its time limit.
# It talks JSON lines over pipes; calls are serialised by a lock, so any thread may grade.
_worker = None
_worker_lock = threading.Lock()


def _worker_stdio() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            ok = _sympy_equal_now(*json.loads(line))
        except Exception:  # noqa: BLE001 -- sympy failing on odd input means "not equal"
            ok = False
        print("1" if ok else "0", flush=True)


def _read_line(proc, timeout: float) -> Optional[str]:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else None


def _start_worker():
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import grader; grader._worker_stdio()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            bufsize=1)
    if (_read_line(proc, 120) or "").strip() != "ready":
        proc.kill()
        raise RuntimeError("the sympy worker process of grader.py did not start; run "
                           f"`{sys.executable} -c 'import sympy'` to see why")
    return proc


def sympy_equal(a: str, b: str, timeout: float = 5.0) -> bool:
    """`_sympy_equal_now` in the worker process; False if it takes longer than `timeout` s."""
    global _worker
    with _worker_lock:
        if _worker is None or _worker.poll() is not None:
            _worker = _start_worker()
        try:
            _worker.stdin.write(json.dumps([a, b]) + "\n")
            _worker.stdin.flush()
            line = _read_line(_worker, timeout)
        except (BrokenPipeError, OSError):
            line = ""
        if line:
            return line.strip() == "1"
        _worker.kill()  # timed out (None) or died (""): a fresh worker serves the next call
        _worker.wait()
        _worker = None
        return False


