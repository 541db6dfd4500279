import numpy as np

from pipeline.metrics import StageMetrics, summarize


def test_percentiles_and_window():
    m = StageMetrics("x", window=100)
    for v in range(1, 201):  # only the last 100 samples (101..200 ms) are kept
        m.record_latency(v / 1000)
    s = m.snapshot()
    assert s["latency_ms_p50"] == np.percentile(np.arange(101, 201), 50)
    assert s["latency_ms_p95"] == round(float(np.percentile(np.arange(101, 201), 95)), 3)
    assert StageMetrics("y").snapshot()["latency_ms_p50"] == 0.0


def test_summary_accounts_for_every_frame():
    stages = {
        "decode": {"frames_out": 90, "dropped": 10},
        "detect": {"frames_in": 85, "frames_out": 85, "dropped": 5},
        "publish": {"frames_in": 85, "frames_out": 85, "dropped": 0, "malformed": 2},
    }
    s = summarize(stages, ["decode", "detect", "publish"], 2.0)
    assert (s["frames"], s["published"], s["dropped"], s["malformed"]) == (100, 85, 15, 2)
    assert s["frames"] == s["published"] + s["dropped"] and s["fps"] == 42.5
