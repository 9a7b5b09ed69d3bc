"""The tiny worlds: a synthetic arithmetic task and two tiny Qwen3 models trained on it, so that
every experiment of the paper runs on a laptop CPU in minutes, offline (docs/tiny_world.md; the
second world: docs/tiny_world2.md).

What this package is
    task.py    the task: problems, their split and worked solutions, the second world's two
               notations, conciseness rule, constitution and judges (imports nothing of the project)
    partition.py  the verdict protocol's disjoint parts of the eval split and the sets drawn from them
    mix.py     the two models' recipes (shapes, schedules) and their training mixes
    measure.py what a model can do (accuracy, rules, hints) and each world's table
    build.py   training a model of the recipe, its snapshots, building a world and the command line
    __main__.py  `python -m tiny_world`, which runs build.main

    This file imports nothing, so that data.py can read the task (`from tiny_world import task`)
    without pulling in the trainers that build.py needs.

Paper (docs/paper.md)
    The tiny world stands in for §2's setting (a stronger teacher, a weaker student of one
    vocabulary and chat format) and teaches both models the two kinds of privileged information
    of §5 (an instance's answer, a shared rule), so that OPSD has something to distil.

Commands
    make tiny                      # reuse tiny/teacher and tiny/student, print their table
    make tiny WORLD=2              # the second world: tiny2/teacher and tiny2/student
    python -m tiny_world --help

What it simplifies
    * Byte-level tokens (models.tiny_tokenizer, which stays with the other models in models.py):
      every character is a position, so problems and contexts are short.
"""
