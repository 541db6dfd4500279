import math

from engines.evaluation.report import markdown_table, plot, warm_sweep


def _results():
    m = dict(mpjpe=100.0, pa_mpjpe=60.0, mpjpe14=110.0, pa_mpjpe14=65.0, pckh=0.9,
             ms_per_frame=12.0, steps=8.0)  # fmt: skip
    r = {p: {"regression": dict(m, mpjpe=150.0, steps=0.0), "cold_fit": m,
             "warm_fit": dict(m, mpjpe=110.0), "warm_fit@1": dict(m, mpjpe=140.0),
             "warm_fit@16": dict(m, mpjpe=105.0, pckh=math.nan)}
         for p in ("clean", "advocc80")}  # fmt: skip
    r["meta"] = {"quick": True}
    return r


def test_table_and_sweep():
    r = _results()
    md = markdown_table(r)
    assert md.count("\n") == 2 + 10
    assert "| advocc80 | regression | 150.0 | 60.0 |" in md and "| - |" in md
    assert warm_sweep(r, "clean") == [(1, 140.0), (16, 105.0)]


def test_plot_writes_png(tmp_path):
    p = plot(_results(), tmp_path / "a" / "acc.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
