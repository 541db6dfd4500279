"""``python -m benchmarks.accuracy`` end to end on test-written real-format data, tiny bundle."""

import json

import numpy as np
import pytest

from benchmarks import accuracy
from engines.body import BodyModel
from engines.fit_config import FitConfig

from ._helpers import S, tiny_bundle
from .test_realdata import _write


def test_missing_model_fails_clearly(tmp_path):
    args = accuracy.parse_args(["--quick", "--model", str(tmp_path / "none.safetensors")])
    with pytest.raises(SystemExit, match="no model bundle"):
        accuracy.run(args)


def test_fit_overrides_reject_malformed_and_unknown_settings(tmp_path):
    model = tiny_bundle(BodyModel.default()).save(tmp_path / "m.safetensors")
    for bad, err, match in (("regression_prior_weight", SystemExit, "KEY=VALUE"),
                            ("no_such_key=1", ValueError, "no_such_key"),
                            ("warm_steps=many", ValueError, "warm_steps")):  # fmt: skip
        args = accuracy.parse_args(["--quick", "--model", str(model), "--fit-set", bad])
        with pytest.raises(err, match=match):
            accuracy.run(args)


@pytest.mark.slow
def test_quick_run_on_real_format_data(tmp_path, capsys):
    model = tiny_bundle(BodyModel.default()).save(tmp_path / "m.safetensors")
    npz, root, _, _ = _write(tmp_path)
    accuracy.main([
        "--quick", "--model", str(model), "--real-npz", str(npz), "--image-root", str(root),
        "--protocols", "clean,advocc80", "--fit-scale", "0.05", "--grid-step", "8",
        "--warm-steps", "1",
    ])  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    r = json.loads(last)
    assert set(r) == {"clean", "advocc80", "paired", "choice", "meta"}  # no "head": real data
    sweep = r["choice"]["advocc80"]  # the cold fits' choice replayed on a grid
    W, A = len(sweep["part_weight"]), len(sweep["bias"])
    assert np.shape(sweep["mpjpe"]) == np.shape(sweep["flip_share"]) == (W, A)
    acc = sweep["accuracy"]  # which cue keeps the best hypothesis where the choice matters
    assert acc["frames"] == r["advocc80"]["cold_fit"]["frames"] >= acc["decisive"]
    default = f"warm_fit@{FitConfig().warm_steps} - cold_fit"
    assert set(r["paired"]["advocc80"]) == {"cold_fit - regression", "cold_fit - cold_fit_plain",
                                            "cold_fit - cold_fit_no_parts", "warm_fit@1 - cold_fit",
                                            default}  # fmt: skip
    d = r["paired"]["clean"]["cold_fit - regression"]
    assert d["frames"] == r["clean"]["cold_fit"]["frames"]
    assert d["ci95_mm"][0] <= d["mean_mm"] <= d["ci95_mm"][1]
    assert set(r["advocc80"]) == {"mean_pose", "regression", "regression_flip", "cold_fit",
                                  "cold_fit_plain", "cold_fit_no_parts", "cold_fit_oracle",
                                  "warm_fit", "warm_fit@1"}  # fmt: skip
    for proto in ("clean", "advocc80"):  # a perfect choice between the starts is never worse
        assert r[proto]["cold_fit_oracle"]["mpjpe"] <= r[proto]["cold_fit"]["mpjpe"] + 1e-6
    for m in r["clean"].values():
        assert m["frames"] >= 2 and m["mpjpe"] > 0
    assert r["meta"]["crop_size"] == S and r["meta"]["data"]["frames"] == 3


@pytest.mark.slow
def test_quick_run_on_the_validation_split(tmp_path, capsys):
    """``--split val`` renders the validation takes (for choosing settings), never holdout."""
    model = tiny_bundle(BodyModel.default()).save(tmp_path / "m.safetensors")
    argv = [
        "--quick", "--model", str(model), "--split", "val", "--protocols", "clean",
        "--frames", "2", "--fit-scale", "0.05", "--warm-steps", "1", "--cold-every", "2",
        "--head-sequences", "3",
    ]  # fmt: skip
    r = accuracy.run(accuracy.parse_args(argv))
    assert r["meta"]["data"]["synthetic"] == "val split (validation takes)"
    assert r["clean"]["regression"]["frames"] == 2 and 0 <= r["kernel_top1"] <= 1
    # the head on more sequences: the protocols' one and two more
    head = r["head"]
    assert (head["sequences"], head["frames"]) == (3, 6)
    assert head["mean_pose"]["frames"] == head["regression"]["frames"] == 6
    assert "pa_reduction_ci95" in head["regression_flip"]
    # like-for-like rows on the cold-fitted frames (frame 0: the warm fit's shared cold start)
    c = r["clean"]
    assert c["regression@cold"]["frames"] == c["warm_fit@cold"]["frames"] == 1
    assert c["warm_fit"]["frames"] == 2
    assert c["warm_fit@cold"]["mpjpe"] == pytest.approx(c["cold_fit"]["mpjpe"])
    # --regression-flip: the flip-averaged head is every method's regression (its row above)
    flip = accuracy.run(accuracy.parse_args([*argv, "--regression-flip"]))
    assert "regression_flip" not in flip["clean"] and flip["meta"]["regression_flip"]
    for k in ("mpjpe", "pa_mpjpe", "pckh"):
        assert flip["clean"]["regression"][k] == pytest.approx(r["clean"]["regression_flip"][k])
    assert r["clean"]["regression_flip"]["pa_mpjpe"] != r["clean"]["regression"]["pa_mpjpe"]
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--split", "train"])


def test_unknown_protocol_is_rejected_before_any_work(tmp_path):
    model = tiny_bundle(BodyModel.default()).save(tmp_path / "m.safetensors")
    args = accuracy.parse_args(["--quick", "--model", str(model), "--protocols", "clean,occ9"])
    with pytest.raises(SystemExit, match=r"unknown protocol.*occ9"):
        accuracy.run(args)


def test_only_the_standard_run_writes_the_committed_results(tmp_path):
    from engines.model import DEFAULT_BUNDLE

    assert accuracy.results_dir(accuracy.parse_args([])) == accuracy.RESULTS
    shipped = ["--model", str(DEFAULT_BUNDLE)]
    assert accuracy.results_dir(accuracy.parse_args(shipped)) == accuracy.RESULTS
    other = str(tmp_path / "head.safetensors")
    for argv, name in ((["--split", "val"], "val-shipped"),
                       (["--model", other], "eval-head"),
                       (["--split", "val", "--model", other], "val-head"),
                       (["--protocols", "clean"], "eval-shipped"),
                       (["--fit-set", "pose_prior_weight=0.1"], "eval-shipped"),
                       (["--regression-flip"], "eval-shipped"),
                       (["--sequences", "4"], "eval-shipped")):  # fmt: skip
        assert accuracy.results_dir(accuracy.parse_args(argv)) == accuracy.SCRATCH / name, argv
    mine = tmp_path / "res"
    assert accuracy.results_dir(accuracy.parse_args(["--split", "val", "--out", str(mine)])) == mine


def test_head_sequences_defaults_and_checks():
    assert accuracy.parse_args([]).head_sequences == 100  # the full run
    assert accuracy.parse_args(["--quick"]).head_sequences == 0
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--head-sequences", "-1"])
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--sequences", "0"])
