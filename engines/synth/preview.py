"""Write a grid of synthetic samples with their ground truth overlaid.

    python -m engines.synth.preview --out out/synth_preview.png [--split train] [--n 16]
        [--size 192] [--seed 0] [--start 0]

Per sample: the crop with 2D joints (red: occluded or outside), the part map, and the
feature-resolution kernel visibility (visible kernels' projections, green).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .dataset import SynthConfig, SynthDataset

_BONES = ((0, 1), (0, 2), (0, 3), (1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9), (7, 10),
          (8, 11), (9, 12), (9, 13), (9, 14), (12, 15), (13, 16), (14, 17), (16, 18), (17, 19),
          (18, 20), (19, 21), (20, 22), (21, 23))  # fmt: skip


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    p = rng.integers(40, 255, (n, 3)).astype(np.uint8)
    p[0] = 0
    return p


def draw_sample(s: dict, kernel_uv: np.ndarray | None = None) -> np.ndarray:  # -> [S, 3S, 3]
    """Crop with skeleton | part map | silhouette + occluder + visible kernels."""
    img = s["image"].numpy().copy()
    j2 = s["joints2d"].numpy()
    occl = s["joints_occluded"].numpy()
    for a, b in _BONES:
        pa, pb = tuple(round(float(x)) for x in j2[a]), tuple(round(float(x)) for x in j2[b])
        cv2.line(img, pa, pb, (255, 255, 0), 1, cv2.LINE_AA)
    for p, o in zip(j2, occl):
        cv2.circle(
            img, (round(float(p[0])), round(float(p[1]))), 2, (255, 0, 0) if o else (0, 255, 0)
        )
    parts = _palette(25)[s["part_map"].numpy()]
    S = img.shape[0]
    third = np.zeros((S, S, 3), np.uint8)
    third[s["silhouette"].numpy()] = (90, 90, 90)
    third[s["occluder_mask"].numpy()] = (140, 40, 40)
    if kernel_uv is not None:
        vis = s["kernel_visible_unocc"].numpy()
        for (u, v), ok in zip(kernel_uv, vis):
            if ok:
                cv2.circle(third, (round(float(u)), round(float(v))), 1, (0, 255, 0), -1)
    return np.concatenate([img, parts, third], 1)


def kernel_projection(ds: SynthDataset, s: dict) -> np.ndarray:  # -> [K, 2] crop pixels
    p = {k: s[k][None] for k in ("global_orient", "body_pose", "betas", "transl")}
    verts, _ = ds.renderer.pose(**p)
    c = verts[ds.renderer.nbv.kernel_ids].double()
    K = s["K"].double()
    return (torch.stack([c[:, 0] / c[:, 2], c[:, 1] / c[:, 2], torch.ones(len(c))], 1) @ K.T)[
        :, :2
    ].numpy()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/synth_preview.png")
    ap.add_argument("--split", default="train", choices=["train", "val", "eval"])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--cols", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = SynthDataset(SynthConfig(crop_size=args.size, seed=args.seed), split=args.split)
    tiles = []
    t0 = time.perf_counter()
    for i in range(args.start, args.start + args.n):
        s = ds[i]
        tiles.append(draw_sample(s, kernel_projection(ds, s)))
    dt = time.perf_counter() - t0
    while len(tiles) % args.cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + args.cols], 1) for i in range(0, len(tiles), args.cols)]
    grid = np.concatenate(rows, 0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {out} ({args.n} samples, {args.split}, {args.n / dt:.1f} samples/s)")


if __name__ == "__main__":
    main()
