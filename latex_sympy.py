"""LaTeX -> sympy for the grader: a small recursive-descent parser and a time-limited worker.

grader.py compares answers by rules first; what the rules leave open, it asks `sympy_equal`: both
strings are parsed here (`latex_to_sympy`: \\frac, \\sqrt, ^, \\pi, e, i, implicit
multiplication, a few functions; model output is parsed, never `eval`'d) and compared with sympy
in a separate worker process, which is killed and replaced when a comparison takes longer than
its time limit. Calls are serialised by a lock, so any thread may grade.

Equality is exact: `simplify(x - y) == 0`, or, for a constant difference simplify leaves, a proof
by `Expr.equals` (minimal polynomials, surds). No numerical tolerance ever makes two values equal,
since `2^{2^{-1000}}` and 1 agree to 300 digits. An infinity equals only itself. The worker also
answers whether two expressions are nonzero constant multiples (the sides of equivalent equations).

    pytest -q tests/test_grader.py tests/test_grader_suite.py

This file imports only the standard library (and sympy, in the worker).
"""

import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from typing import Optional

# -----------------------------------------------------------------------------
# LaTeX -> sympy (a small recursive-descent parser: no eval of model output, ever)


class LatexParseError(ValueError):
    pass


_GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "theta",
    "lambda",
    "mu",
    "nu",
    "rho",
    "sigma",
    "tau",
    "phi",
    "omega",
    "psi",
    "chi",
    "eta",
    "zeta",
    "xi",
    "kappa",
}
_FUNCS = {"sin", "cos", "tan", "cot", "sec", "csc", "ln", "log", "exp", "arcsin", "arccos", "arctan"}
_COMMANDS = {"cdot", "times", "ast", "div", "frac", "sqrt", "binom", "pi", "infty"} | _FUNCS | _GREEK
_TOKEN_RE = re.compile(r"(\d+\.?\d*|\.\d+)|\\([a-zA-Z]+)|([a-zA-Z])|([+\-*/^(){}\[\]!_])|(\S)")
_MAX_EXPONENT = 2000
_MAX_BITS = 100_000  # an exact power above this many bits (2^{100000} has 30,103 digits) is refused
# a root of a rational number of higher degree is refused: sympy's assumptions build its minimal
# polynomial, of that degree (2^{2^{-1000}} is a root of degree 2^{1000})
_MAX_ROOT = 1000


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
            if exp.is_Number and base.is_Rational and abs(base) != 1 and abs(exp) > 1:
                # the size of an exact power, before sympy tries to build it
                bits = max(abs(base.p), base.q).bit_length()
                if abs(exp) > _MAX_EXPONENT or float(abs(exp)) * bits > _MAX_BITS:
                    raise LatexParseError("exponent too large")
            if base.is_Rational and exp.is_Rational and exp.q > _MAX_ROOT:
                raise LatexParseError("root of too high a degree")
            return base**exp
        return base

    def postfix(self):
        v = self.atom()
        while self.peek() == ("op", "!"):
            self.take()
            if not v.is_Integer or v > 1000:
                raise LatexParseError("factorial of a non-integer or too large")
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
            if name in ("e", "i"):  # Euler's number and the imaginary unit, as in MATH answers
                return sp.E if name == "e" else sp.I
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
                if n.is_Number and abs(n) > 10000:
                    raise LatexParseError("binomial too large")
                return sp.binomial(n, self.group())
            if val == "sqrt":
                if self.peek() == ("op", "["):
                    self.take()
                    index = self.expr()
                    self.take("op", "]")
                    if index.is_Rational and abs(index.p) > _MAX_ROOT:
                        raise LatexParseError("root of too high a degree")
                    return sp.root(self.group(), index)
                return sp.sqrt(self.group())
            fn = {"ln": sp.log, "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan}.get(val)
            fn = fn or getattr(sp, val)
            exp = base = None
            if val == "log" and self.peek() == ("op", "_"):  # \log_2 8, \log_{10} x
                self.take()
                base = self.group()
            if self.peek() == ("op", "^"):  # \sin^2 x = (\sin x)^2
                self.take()
                exp = self.postfix()
            if self.peek() in (("op", "("), ("op", "{")):  # \sin(x)^2: the ^2 is the caller's
                arg = self.atom()
            else:  # \cos 2x = \cos(2x), \sin 2\pi t: numbers, letters and \pi; \sin x\cos x stops
                arg = self.power()
                while self.peek()[0] in ("num", "sym") or self.peek() == ("cmd", "pi"):
                    arg = arg * self.power()
            if exp == -1 and val in ("sin", "cos", "tan"):  # \cos^{-1} x is arccos x, not sec x
                fn, exp = {"sin": sp.asin, "cos": sp.acos, "tan": sp.atan}[val], None
            v = fn(arg) if base is None else sp.log(arg, base)
            return v if exp is None else v**exp
        raise LatexParseError(f"unexpected {val!r}")


def latex_to_sympy(s: str):
    """A sympy expression for a normalised LaTeX answer; LatexParseError if it is not one."""
    import sympy

    if len(s) > 400:
        raise LatexParseError("answer too long to compare symbolically")
    try:
        return _Parser(_lex(s), sympy).parse()
    except RecursionError:
        raise LatexParseError("answer nested too deeply") from None


def _sympy_equal_now(a: str, b: str, proportional: bool = False) -> bool:
    """Symbolic equality of two normalised answers, in this process (no time limit); with
    `proportional`, whether one is a nonzero constant multiple of the other (equations' sides)."""
    import sympy

    try:
        x, y = latex_to_sympy(a), latex_to_sympy(b)
    except (LatexParseError, ValueError, TypeError, ZeroDivisionError, AttributeError):
        return False
    infinite = (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)
    if proportional:
        if not x.free_symbols or not y.free_symbols or x.has(*infinite) or y.has(*infinite):
            return False
        r = sympy.simplify(x / y)
        return not r.free_symbols and r.is_nonzero is True and r.is_finite is True
    if x == y:
        return True
    if x.has(*infinite) or y.has(*infinite):
        return False  # an infinity equals only the same infinity, caught by x == y
    d = sympy.simplify(x - y)
    if d == 0:
        return True
    if d.free_symbols or d.is_Rational:
        return False  # an exact nonzero difference: 3^{20} is not 3486784400, however close
    # a constant that simplify could not reduce (nested radicals, e^{i\pi/4}): zero only when
    # sympy proves it (minimal polynomials, surds); a tiny numerical value is no proof, since
    # 2^{2^{-1000}} - 1 is below any float resolution and still not zero
    return d.equals(0) is True


# The sympy worker: a fresh Python process (it imports only this file and sympy) that lives across
# calls and is killed, then restarted on the next call, when a comparison exceeds its time limit.
# It talks JSON lines over pipes; calls are serialised by a lock, so any thread may grade.
_worker = None
_worker_lock = threading.Lock()


def _worker_stdio() -> None:
    try:  # a comparison that would exhaust memory fails (MemoryError: "not equal") instead
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > 4 << 30:
            resource.setrlimit(resource.RLIMIT_AS, (min(4 << 30, hard) if hard > 0 else 4 << 30, hard))
    except (ImportError, ValueError, OSError):
        pass
    import sympy  # noqa: F401 -- before "ready": the import is start-up time, not a comparison's

    print("ready", flush=True)
    for line in sys.stdin:
        try:
            a, b, proportional = json.loads(line)
            ok = _sympy_equal_now(a, b, proportional)
        except Exception:  # noqa: BLE001 -- sympy failing on odd input means "not equal"
            ok = False
        print("1" if ok else "0", flush=True)


def _read_line(proc, timeout: float) -> Optional[str]:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else None


def _start_worker():
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import latex_sympy; latex_sympy._worker_stdio()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    if (_read_line(proc, 120) or "").strip() != "ready":
        proc.kill()
        raise RuntimeError(
            "the sympy worker process of latex_sympy.py did not start; run "
            f"`{sys.executable} -c 'import sympy'` to see why"
        )
    return proc


def sympy_equal_timed(a: str, b: str, timeout: float, proportional: bool = False):
    """(`_sympy_equal_now` in the worker process, False past `timeout` s; the seconds spent
    waiting for the lock and for a worker to start, which the timeout does not cover)."""
    global _worker
    t0 = time.monotonic()
    with _worker_lock:
        if _worker is None or _worker.poll() is not None:
            _worker = _start_worker()
        waited = time.monotonic() - t0
        line = None
        try:
            _worker.stdin.write(json.dumps([a, b, proportional]) + "\n")
            _worker.stdin.flush()
            line = _read_line(_worker, timeout)
        except (BrokenPipeError, OSError):
            pass
        finally:  # timed out (None), died (""), or interrupted: the worker may still owe an
            if not line:  # answer, so a fresh one serves the next call
                _worker.kill()
                _worker.wait()
                _worker = None
        return bool(line) and line.strip() == "1", waited


def sympy_equal(a: str, b: str, timeout: float = 5.0) -> bool:
    """`_sympy_equal_now` in the worker process; False if it takes longer than `timeout` s."""
    return sympy_equal_timed(a, b, timeout)[0]
