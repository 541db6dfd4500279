"""Convert the CMU training takes into SMPL sequences (``.npz``, see :class:`SMPLMotion`).

    python -m engines.motion.convert [--src DIR] [--out .cache/motion] [--learn-limits PATH]

Only the top-level ``*.bvh`` of ``--src`` are read: ``holdout/`` is never touched. With
``--learn-limits`` the joint limits / pose prior of :mod:`engines.motion.sampler` are learned from
the converted takes and written to PATH (the shipped file is ``engines/data/joint_limits.npz``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from engines.body import BodyModel
from engines.paths import mocap_dir

from .retarget import SMPLMotion, retarget_file
from .sampler import learn_pose_stats

DEFAULT_OUT = Path(".cache/motion")


def training_takes(src: Path) -> list[Path]:
    """The training BVH files directly in ``src`` (sorted; sub-folders such as ``holdout/`` are
    not searched)."""
    return sorted(p for p in Path(src).glob("*.bvh") if p.is_file())


def convert(src: Path, out: Path, rest_joints: np.ndarray) -> list[SMPLMotion]:  # [24, 3]
    """Retarget every training take in ``src`` and save ``out/<take>.npz``."""
    out.mkdir(parents=True, exist_ok=True)
    motions = []
    for path in training_takes(src):
        m = retarget_file(path, rest_joints)
        m.save(out / f"{path.stem}.npz")
        motions.append(m)
    return motions


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=None, help="training BVH takes (default: shared)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="cache folder for .npz files")
    ap.add_argument("--body", type=Path, default=None, help="SMPL-format model (default: shipped)")
    ap.add_argument("--learn-limits", type=Path, default=None, help="write learned pose stats")
    args = ap.parse_args(argv)
    src = mocap_dir() if args.src is None else args.src
    body = BodyModel.default() if args.body is None else BodyModel.from_file(args.body)
    rest = body.rest_joints()[0].double().numpy()
    t0 = time.perf_counter()
    motions = convert(src, args.out, rest)
    dt = time.perf_counter() - t0
    if not motions:
        raise SystemExit(f"no .bvh files in {src}")
    if args.learn_limits is not None:
        learn_pose_stats(motions).save(args.learn_limits)
    frames = sum(len(m) for m in motions)
    print(json.dumps({"takes": len(motions), "frames": frames, "seconds": round(dt, 2),
                      "out": str(args.out)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
