"""`python -m tiny_world`: build (or reuse) a tiny world's two models and print their table, train
one model of the recipe, or choose Fix 2's matched far teacher (build.py has the command).

What this file is
    The command line entry of the package, and nothing else: it runs build.main through errors.run
    (a bad flag ends in one line and exit code 2).

Paper (docs/paper.md)
    None of its own: build.py's (§4 Fix 2 at similar accuracy).

Command
    python -m tiny_world --help

What it simplifies
    * The name in error messages is set here, since `python -m` names the program `__main__.py`.
"""

import sys

import errors
from tiny_world import build

if __name__ == "__main__":
    sys.argv[0] = "python -m tiny_world"  # what errors.run prints before `error:`
    errors.run(build.main)
