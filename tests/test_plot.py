"""experiments/plot.py: the run table reports what the metrics file holds; the moving average is centred."""

import json

from experiments import plot


def test_table_and_smoothing(tmp_path):
    run = tmp_path / "sg20"
    run.mkdir()
    keys = ["len/mean", "len/truncated_frac", "rep/ratio", "topk/student_mass", "topk/overlap", "kl/full"]
    lines = [{"step": 0, "eval": {"student": {"acc/pass@1": 0.25}}}]
    for s in range(1, 13):
        lines.append({"step": s, "loss": 0.1, **{k: float(s + i) for i, k in enumerate(keys)}})
    lines.append({"step": 12, "eval": {"student": {"acc/pass@1": 0.75}}})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(l) for l in lines))
    row = plot.table([str(run)], last=4).splitlines()[-1].split("|")
    cells = [c.strip() for c in row[1:-1]]
    assert cells[:4] == ["sg20", "12", "0.250", "0.750"]
    # steps 9..12: mean of s + i is 10.5 + i
    assert [float(c) for c in cells[4:]] == [10.5 + i for i in range(len(keys))]
    assert plot.smooth([0, 0, 3, 0, 0], 3) == [0, 1, 1, 1, 0]
    out = plot.plot([str(run)], str(tmp_path / "c.png"))
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
