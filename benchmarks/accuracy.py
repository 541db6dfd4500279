"""Accuracy of occlusion-robust NBV fitting: regression head vs cold vs warm fitting.

    python -m benchmarks.accuracy --quick   # smoke run; last line: one JSON object
    python -m benchmarks.accuracy           # writes benchmarks/results/accuracy.{json,md,png}
    python -m benchmarks.accuracy --split val --model m.safetensors  # writes out/accuracy/val-m/
    python -m benchmarks.accuracy --real-npz 3dpw_test.npz --image-root /data/3DPW

Data: held-out synthetic video sequences (``engines.evaluation.samples``: holdout motion takes,
held-out textures and backgrounds), or a real SPIN/mmhuman3d-style ``.npz``
(``engines.evaluation.realdata``). Protocols: clean, occ, advocc40, advocc80
(``engines.evaluation.protocols``; AdvOcc keeps, per frame, the regression head's worst patch
position, so in video the patch jumps from frame to frame). Methods and timing:
``engines.evaluation.runner`` (regression, cold_fit, cold_fit_plain on advocc80 (the plain
likelihood), cold_fit_no_parts on advocc80 (hypotheses chosen without the part head), warm_fit at
``FitConfig.warm_steps`` and warm_fit@n for every ``--warm-steps`` n). ``regression@cold`` and
``warm_fit@cold`` are the regression and warm_fit scored on the cold-fit frames only (like for
like with cold_fit when ``--cold-every`` > 1; warm_fit and regression score every frame).
``cold_fit_oracle`` is a diagnostic, not a method: per frame the cold
fit's hypothesis (its start or the front/back flip) nearest the ground truth, so its distance
to cold_fit is what the choice between them costs. ``regression_flip`` is the head flip
test-time averaged (``engines.mirror``) on the same images (under AdvOcc the patch is the plain
head's worst, not its own); ``--regression-flip`` makes that the regression of every method and
of the search.

Output: ``{protocol: {method: {mpjpe, pa_mpjpe, mpjpe14, pa_mpjpe14, pckh, ms_per_frame, steps,
frames}}, "paired": {protocol: {"A - B": {mean_mm, ci95_mm, a_better, frames}}}, "meta": {...}}``;
errors in mm after pelvis alignment, PCKh@0.5 on the 14-joint set. "paired" compares two methods
frame by frame on the cold-fitted frames (``engines.evaluation.stats``: the mean difference, its
95% two-stage bootstrap interval over sequences and their frames, the share of frames where A is
better). "choice" (a diagnostic, ``engines.evaluation.choice``): per protocol, cold_fit's MPJPE
with its choice between hypotheses replayed on a grid of part weights and biases towards the
regression's start, for choosing ``FitConfig.part_weight`` on ``--split val``, and under
"accuracy" which cue keeps the best hypothesis on the frames where the choice matters
(``choice_accuracy``). Synthetic data
also gives ``kernel_top1`` (and ``kernel_top1_front``, the released code's target set) and
"part_head" (``part_top1``, ``part_lr_swap``: ``engines.evaluation.features``).
"head" (``engines.evaluation.head``, synthetic data): the regression head, plain and flip
averaged, and the mean pose on ``--head-sequences`` clean sequences (the full run: 100 of 8
frames, the protocols' 20 among them), with the head's PA-MPJPE reduction against the mean
pose and its 95% bootstrap interval over sequences; the head is cheap, and on 160 frames its
mean moved by several percent.
The full run renders 20 sequences of 8 frames (four per holdout take), cold-fits every
``--cold-every`` 2nd frame (frame 0 included; a cold fit is 240 steps per frame, the bulk of the
run time), warm-fits every frame (batched across sequences) and searches the full AdvOcc grid.
Fewer frames are not enough to compare models or fit settings: with 5 x 8 frames and 10
cold-fitted, the cold_fit - regression difference moved by 10-20% of the error between samples,
and with 10 x 8 (40 cold-fitted) neighbouring checkpoints still swapped places by tens of mm on
advocc80, where a warm-started track keeps a wrong start for the whole sequence.
``--quick`` subsamples the AdvOcc grid (every 4th row/column) and scales the cold-fit schedule
by ``--fit-scale`` 0.25 (numbers are for a smoke test, not for comparison; see "meta").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
# full runs other than the standard one (see ``results_dir``) write here, outside git
SCRATCH = Path(__file__).resolve().parents[1] / "out" / "accuracy"


def _parse_ints(s: str) -> list[int]:
    out = [int(x) for x in s.split(",") if x.strip()]
    if any(v < 0 for v in out):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {s!r}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from engines.evaluation.samples import EVAL_SPLITS

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="few frames, coarse grid, short fits")
    ap.add_argument("--model", help="model bundle (.safetensors); default: the shipped one")
    ap.add_argument("--frames", type=int, help="frames per sequence (real data: in total, all)")
    ap.add_argument("--sequences", type=int, help="synthetic sequences")
    ap.add_argument("--head-sequences", type=int,
                    help="synthetic sequences (the first --sequences and more) on which the "
                    "regression head and the mean pose are also scored, clean (\"head\"; 0: "
                    "none)")  # fmt: skip
    ap.add_argument("--protocols", default="clean,occ,advocc40,advocc80")
    ap.add_argument("--warm-steps", type=_parse_ints, help="warm_fit@n sweep, e.g. 1,2,4,8,16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="eval", choices=EVAL_SPLITS,
                    help="synthetic data: eval = holdout takes (report); val = validation takes "
                    "(choose settings on these, not on eval)")  # fmt: skip
    ap.add_argument("--grid-step", type=int, help="AdvOcc: every n-th grid row/column")
    ap.add_argument("--cold-every", type=int, help="cold fits on every n-th frame")
    ap.add_argument("--fit-batch", type=int, default=8, help="bodies per cold-fit batch")
    ap.add_argument("--fit-scale", type=float, help="scale of the cold-fit step counts")
    ap.add_argument("--regression-flip", action="store_true",
                    help="regression head with flip test-time averaging (engines.mirror), "
                    "used by every method and the AdvOcc search")  # fmt: skip
    ap.add_argument("--real-npz", help="SPIN/mmhuman3d-style .npz (replaces synthetic data)")
    ap.add_argument("--image-root", help="image directory of --real-npz")
    ap.add_argument("--focal", type=float, help="real data: frame focal length (px)")
    ap.add_argument("--out", help="results directory (full run); default: benchmarks/results/ "
                    "for the standard run (eval split, shipped model, default settings), else "
                    "out/accuracy/<split>-<model>/")  # fmt: skip
    ap.add_argument("--fit-set", action="append", default=[], metavar="KEY=VALUE",
                    help="FitConfig override, e.g. pose_prior_weight=0.1 (repeatable)")  # fmt: skip
    a = ap.parse_args(argv)
    q = a.quick
    defaults = dict(frames=3 if q else 8, sequences=1 if q else 20,
                    head_sequences=0 if q else 100, warm_steps=[2, 8] if q else
                    [1, 2, 4, 8, 16], grid_step=4 if q else 1, cold_every=1 if q else 2,
                    fit_scale=0.25 if q else 1.0)  # fmt: skip
    if a.real_npz:
        defaults["frames"] = None  # all frames of the file
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.real_npz and not a.image_root:
        ap.error("--real-npz needs --image-root")
    if min(a.frames or 1, a.sequences, a.head_sequences + 1) < 1:
        ap.error("--frames and --sequences must be > 0, --head-sequences >= 0")
    if a.real_npz:
        a.head_sequences = 0  # real data: its own frames only
    return a


def results_dir(args: argparse.Namespace) -> Path:
    """Where a full run writes: ``--out`` if given; ``benchmarks/results/`` (committed) only for
    the standard run, the one the README and the issues report (eval split, the shipped model,
    every other option at its default); any other run under ``out/accuracy/`` (git-ignored),
    so that an experiment never replaces the shipped model's results."""
    from engines.model import DEFAULT_BUNDLE

    if args.out:
        return Path(args.out)
    ref = parse_args([])
    skip = {"out", "model"}
    same = all(getattr(args, k) == v for k, v in vars(ref).items() if k not in skip)
    shipped = args.model is None or Path(args.model).resolve() == DEFAULT_BUNDLE.resolve()
    if same and shipped:
        return RESULTS
    model = Path(args.model).stem if args.model else "shipped"
    return SCRATCH / f"{args.split}-{model}"


def _fit_overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--fit-set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_bundle(path: str | None):
    from engines.model import DEFAULT_BUNDLE, load_model

    p = Path(path) if path else DEFAULT_BUNDLE
    if not p.is_file():
        raise SystemExit(
            f"accuracy benchmark: no model bundle at {p}. Train one (python -m engines.train) "
            "or pass --model PATH to a bundle written by ModelBundle.save."
        )
    return load_model(p), p


def run(args: argparse.Namespace, progress=None) -> dict:
    """The whole benchmark; ``progress(str)`` is told what happens (a progress bar)."""
    from engines.evaluation.choice import choice_accuracy, choice_sweep
    from engines.evaluation.protocols import PROTOCOLS
    from engines.evaluation.runner import Evaluator, build_protocol, oracle, score
    from engines.evaluation.samples import synthetic_sequences
    from engines.evaluation.stats import paired_difference
    from engines.fit_config import FitConfig
    from engines.synth.backgrounds import BackgroundBank

    say = progress or (lambda s: None)
    t_start = time.perf_counter()
    protocols = [p for p in args.protocols.split(",") if p]
    bad = set(protocols) - set(PROTOCOLS)
    if bad:
        raise SystemExit(f"unknown protocol(s) {sorted(bad)}; choose from {PROTOCOLS}")
    bundle, model_path = load_bundle(args.model)
    base = FitConfig.from_dict(_fit_overrides(args.fit_set))
    fit_cfg = replace(
        base,
        stage1_steps=max(1, round(base.stage1_steps * args.fit_scale)),
        stage2_steps=max(1, round(base.stage2_steps * args.fit_scale)),
    )
    ev = Evaluator(bundle, fit_config=fit_cfg, regression_flip=args.regression_flip)
    S = ev.size
    if args.real_npz:
        from engines.evaluation.realdata import RealDataset

        if "occ" in protocols:
            raise SystemExit("the occ protocol needs body silhouettes; real data has none")
        data = RealDataset(args.real_npz, args.image_root, S, args.focal, ev.body, args.frames)
        seqs = data.sequences()
        source = {"real_npz": str(args.real_npz), "frames": len(data)}
    else:
        # the first args.sequences for every protocol; all of them for the head ("head")
        every = synthetic_sequences(max(args.sequences, args.head_sequences), args.frames, S,
                                    args.seed, progress=say, split=args.split)  # fmt: skip
        seqs = every[: args.sequences]
        takes = "holdout takes" if args.split == "eval" else "validation takes"
        source = {"synthetic": f"{args.split} split ({takes})", "sequences": len(seqs),
                  "frames_per_sequence": args.frames}  # fmt: skip
    bank = BackgroundBank("heldout")
    results: dict = {}
    info: dict = {}
    paired: dict = {}  # per protocol: per-frame differences between methods on the same frames
    choice: dict = {}  # per protocol: the cold fits' choice replayed with other part weights
    for pi, proto in enumerate(protocols):
        rng = np.random.default_rng([args.seed, pi])
        pfs = []
        for si, seq in enumerate(seqs):
            say(f"{proto}: build sequence {si + 1}/{len(seqs)}")
            pfs.append(build_protocol(ev, seq, proto, rng, bank, args.grid_step))
        say(f"{proto}: regression")
        reg_out, regs = zip(*(ev.run_regression(pf) for pf in pfs))
        r = {"regression": score(list(reg_out), pfs)}
        r["mean_pose"] = score([ev.run_mean_pose(pf, g) for pf, g in zip(pfs, regs)], pfs)
        if not args.regression_flip:  # the head flip test-time averaged, on the same images
            r["regression_flip"] = score([ev.run_regression(pf, flip=True)[0] for pf in pfs], pfs)
        say(f"{proto}: cold_fit")
        cold = ev.run_cold(pfs, list(regs), every=args.cold_every, batch=args.fit_batch)
        r["cold_fit"] = score(cold, pfs)
        if all(o.hypotheses is not None for o in cold):  # diagnostic: a perfect flip choice
            r["cold_fit_oracle"] = score(oracle(cold, pfs), pfs)
        if all(o.hypothesis_scores is not None for o in cold):  # diagnostic: other weights
            choice[proto] = choice_sweep(cold, pfs)
            choice[proto]["accuracy"] = choice_accuracy(cold, pfs, fit_cfg.part_weight)
        at_cold = [o.subset(o.index % args.cold_every == 0) for o in reg_out]
        if args.cold_every > 1:  # the regression on the cold-fit frames: a like-for-like row
            r["regression@cold"] = score(at_cold, pfs)
        if proto == "advocc80":
            say(f"{proto}: cold_fit_plain")
            plain = ev.run_cold(pfs, list(regs), plain=True, every=args.cold_every,
                                batch=args.fit_batch)  # fmt: skip
            r["cold_fit_plain"] = score(plain, pfs)
            say(f"{proto}: cold_fit_no_parts")
            no_parts = ev.run_cold(pfs, list(regs), every=args.cold_every, batch=args.fit_batch,
                                   parts=False)  # fmt: skip
            r["cold_fit_no_parts"] = score(no_parts, pfs)
        pair = {"cold_fit - regression": paired_difference(cold, at_cold, pfs)}
        if proto == "advocc80":
            pair["cold_fit - cold_fit_plain"] = paired_difference(cold, plain, pfs)
            pair["cold_fit - cold_fit_no_parts"] = paired_difference(cold, no_parts, pfs)
        sweep = {}
        for n in sorted({fit_cfg.warm_steps, *args.warm_steps}):
            say(f"{proto}: warm_fit@{n}")
            warm = ev.run_warm(pfs, list(regs), n, cold)
            sweep[n] = score(warm, pfs)
            on_cold = [o.subset(o.index % args.cold_every == 0) for o in warm]
            pair[f"warm_fit@{n} - cold_fit"] = paired_difference(on_cold, cold, pfs)
            if n == fit_cfg.warm_steps and args.cold_every > 1:  # like for like with cold_fit
                r["warm_fit@cold"] = score(on_cold, pfs)
        paired[proto] = pair
        r["warm_fit"] = sweep[fit_cfg.warm_steps]
        r.update({f"warm_fit@{n}": sweep[n] for n in args.warm_steps})
        results[proto] = r
        infos = [i for pf in pfs for i in pf.info]
        keys = ("coverage", "regression_mpjpe", "n_positions")
        info[proto] = {k: float(np.mean([i[k] for i in infos])) for k in keys if k in infos[0]}
    if args.head_sequences:
        from engines.evaluation.head import head_accuracy

        say(f"head: regression and mean pose on {args.head_sequences} clean sequences")
        results["head"] = head_accuracy(ev, every[: args.head_sequences])
    from engines.evaluation.features import kernel_top1_eval, part_eval

    if not args.real_npz:  # feature quality on held-out synthetic images
        say("kernel_top1")
        n_img = 32 if args.quick else 128
        results["kernel_top1"] = kernel_top1_eval(bundle, n_img, args.seed, split=args.split)
        # the released code's target set (front slot of an M = 1 render): for comparison
        results["kernel_top1_front"] = kernel_top1_eval(
            bundle, n_img, args.seed, pool_slots=1, pool_min_weight=1e-3, split=args.split
        )
        say("part head")
        results["part_head"] = part_eval(bundle, n_img, args.seed, split=args.split)
    results["paired"] = paired
    results["choice"] = choice
    results["meta"] = {
        "model": str(model_path),
        "model_metadata": {
            k: v
            for k, v in bundle.metadata.items()
            if k in ("code_version", "body_model_hash", "step", "format")
        },
        "crop_size": S,
        "data": source,
        "quick": bool(args.quick),
        "seed": args.seed,
        "grid_step": args.grid_step,
        "regression_flip": bool(args.regression_flip),
        "cold_every": args.cold_every,  # cold_fit rows score frames t % cold_every == 0 only
        "fit_batch": args.fit_batch,
        "fit_config": asdict(fit_cfg),
        "protocol_info": info,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }
    return results


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    args = parse_args(argv)
    bar = tqdm(file=sys.stderr, bar_format="{elapsed} {desc}", dynamic_ncols=True)

    def progress(s: str) -> None:
        bar.set_description_str(s)
        bar.update(1)

    try:
        results = run(args, progress)
    finally:
        bar.close()
    if not args.quick:
        from engines.evaluation.report import markdown_table, plot

        out = results_dir(args)
        out.mkdir(parents=True, exist_ok=True)
        (out / "accuracy.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        (out / "accuracy.md").write_text(markdown_table(results))
        plot(results, out / "accuracy.png")
        print(markdown_table(results))
        print(f"wrote {out}/accuracy.{{json,md,png}}", file=sys.stderr)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
