"""The report harness: the experiments behind RESULTS.md, their claims and verdicts, and the
training-curve plots. The concepts (losses.py, rollout.py, the trainers) stay at the top level;
these modules run them and read what they write.

    settings.py     how long each experiment runs, each tiny world's models, the OPD variants
    plan.py         the plan of runs: each run's script, flags, folder and what it needs first
    report.py       the runner and the command line of `make report`
    results.py      RESULTS.md and the README's headline, from the finished runs
    claims.py       reading a run's summary and metrics, mean ± std, the collapse signature
    mechanisms.py   RESULTS.md's sections on Mechanisms 1 and 3, with their verdict rules
    collapse.py     the collapse protocol's readings (docs/collapse.md): onsets, the pilot's choices,
                    the alarm's scores, where a run's tail mass goes
    mechanism2.py   RESULTS.md's section on Mechanism 2 and Fix 1, by the protocol's rules
    quickstart.py   the README's make opd tables, from the runs kept in results/quickstart/
    fixes.py        RESULTS.md's sections on Fixes 2 and 3 and the recipe, with their verdict rules
    plot.py         curves of one or more runs in one PNG, and a table of their final values

Run them as modules from the project root (`python -m experiments.report`, `python -m
experiments.plot RUN`): they import the project's top-level modules (common, errors, run_folder)
by name, and the report starts the trainers by their paths there.
"""
