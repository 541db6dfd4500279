"""Render the default body as a Neural Body Volume: feature and silhouette images in ``out/``.

``python -m engines.demo [--out out] [--size 80] [--zoom 4]``. The default 80x80 map is the
resolution the released 3DNBF code fits at (enlarged ``zoom`` times for viewing). Each
kernel's "feature" is a colour (its limb's hue, shaded by its rest height), rendered with the
NBV renderer exactly as kernel features are during fitting; the second panel is the
silhouette, the third the coverage mask.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from engines.body import BodyModel
from engines.nbv import LIMB_NAMES, NeuralBodyVolume
from engines.render import Camera, render, render_features


def kernel_colours(nbv: NeuralBodyVolume) -> torch.Tensor:  # -> [K, 3] in [0, 1]
    L = len(LIMB_NAMES)
    y = nbv.rest_centres[:, 1]
    shade = 0.55 + 0.45 * (y - y.min()) / (y.max() - y.min())
    cols = []
    for k in range(nbv.num_kernels):
        h = float(nbv.kernel_limb[k]) / L
        cols.append(colorsys.hsv_to_rgb(h, 0.75, float(shade[k])))
    return torch.tensor(cols, dtype=torch.float32)


def render_demo(size: int = 320) -> dict[str, np.ndarray]:
    body = BodyModel.default()
    nbv = NeuralBodyVolume(body)
    pose = torch.zeros(1, 69)
    pose[0, 15 * 3 + 2] = -0.5  # left shoulder down a little
    pose[0, 16 * 3 + 2] = 0.9  # right shoulder down
    pose[0, 17 * 3 + 1] = -1.0  # left elbow bent forward
    pose[0, 3 * 3] = 0.5  # left knee bent
    go = torch.tensor([[math.pi, 0.35, 0.0]])  # upright, turned a little
    v = body.v_template
    mid_y = float((v[:, 1].max() + v[:, 1].min()) / 2)
    f = size * 1.5
    z = f * 2.0 / (0.85 * size)  # ~2 m of body fills 85% of the image
    transl = torch.tensor([[0.0, mid_y, z]])
    centres, _ = nbv.pose(body, go, pose, torch.zeros(1, 10), transl)
    cam = Camera(f, f, (size - 1) / 2, (size - 1) / 2, size, size)
    t = time.perf_counter()
    out = render(centres, cam, M=10)
    img = render_features(out, kernel_colours(nbv))[0].permute(1, 2, 0)  # [H, W, 3]
    ms = (time.perf_counter() - t) * 1000
    feat = (img.clamp(0, 1).numpy() * 255).astype(np.uint8)
    sil = (out.silhouette[0].numpy() * 255).astype(np.uint8)
    mask = out.mask[0].numpy().astype(np.uint8) * 255
    return {"features": feat, "silhouette": sil, "mask": mask, "render_ms": ms,
            "visible_kernels": int(out.visibility.sum())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engines.demo", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("out"))
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--zoom", type=int, default=4)
    args = ap.parse_args(argv)
    r = render_demo(args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    grey = [cv2.cvtColor(r[k], cv2.COLOR_GRAY2RGB) for k in ("silhouette", "mask")]
    panel = np.concatenate([r["features"], *grey], axis=1)
    panel = cv2.resize(panel, None, fx=args.zoom, fy=args.zoom, interpolation=cv2.INTER_NEAREST)
    path = args.out / "nbv_render.png"
    cv2.imwrite(str(path), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    summary = {"image": str(path), "render_ms": round(r["render_ms"], 2),
               "visible_kernels": r["visible_kernels"]}  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
