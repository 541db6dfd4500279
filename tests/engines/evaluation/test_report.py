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


def test_paired_rows_follow_the_methods_and_are_not_a_protocol():
    r = _results()
    r["paired"] = {"advocc80": {"cold_fit - regression": {"mean_mm": -12.34, "ci95_mm": [-20.0,
                   -4.5], "a_better": 0.7, "frames": 40, "sequences": 10}}}  # fmt: skip
    md = markdown_table(r)
    assert md.count("\n") == 2 + 10 + 4  # a blank line, a head, a rule, a row
    assert "| advocc80 | cold_fit - regression | -12.3 | [-20.0, -4.5] | 0.70 | 40 | 10 |" in md
    assert "| paired |" not in md


def test_plot_ignores_the_paired_section(tmp_path):
    r = _results()
    r["paired"] = {"clean": {"cold_fit - regression": {"mean_mm": 1.0, "ci95_mm": [0.0, 2.0],
                   "a_better": 0.5, "frames": 4}}}  # fmt: skip
    assert plot(r, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_writes_png(tmp_path):
    p = plot(_results(), tmp_path / "a" / "acc.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
