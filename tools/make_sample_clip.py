"""Generate the bundled sample clip ``engines/data/sample.mp4`` (+ ground truth ``sample_gt.npz``).

The free body model walks with a real CMU take (validation split: never a holdout take) in front
of a real background, seen by a fixed camera; a textured board slides across the frame in front
of the person halfway through, so the demo shows fitting under occlusion.

    python tools/make_sample_clip.py [--frames 90] [--fps 30] [--size 640x360]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np

from engines.synth.backgrounds import BackgroundBank
from engines.synth.dataset import SynthConfig
from engines.synth.occluders import occluder_texture
from engines.synth.sequence import render_sequence

OUT = Path(__file__).resolve().parents[1] / "engines" / "data"


def add_sliding_board(frames: np.ndarray, seed: int = 0) -> np.ndarray:  # [T, H, W, 3]
    """A textured board (a quarter of the frame wide) crossing the frame in the middle half."""
    T, H, W, _ = frames.shape
    rng = np.random.default_rng(seed)
    bw = W // 4
    tex = occluder_texture(rng, max(H, bw), BackgroundBank("heldout"), real_prob=1.0)[:H, :bw]
    out = frames.copy()
    t0, t1 = T // 4, 3 * T // 4
    for t in range(t0, t1):
        x = round(-bw + (W + bw) * (t - t0) / (t1 - t0 - 1))
        a, b = max(x, 0), min(x + bw, W)
        if b > a:
            out[t, int(0.15 * H) :, a:b] = tex[int(0.15 * H) :, a - x : b - x]
    return out


def encode(frames: np.ndarray, path: Path, fps: int) -> None:
    with av.open(str(path), "w") as c:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "yuv420p"
        if codec == "libx264":
            s.options = {"crf": "23", "preset": "medium"}
        else:
            s.bit_rate = 1_500_000
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--take", default="cmu_07_06.bvh")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    cfg = SynthConfig(distance=(5.0, 5.5), elevation_deg=(0.0, 10.0), real_background_prob=1.0)
    seq = render_sequence(cfg, "val", args.take, args.frames, fps=args.fps, frame_size=(w, h),
                          seed=1)  # fmt: skip
    frames = add_sliding_board(seq.frames)
    args.out.mkdir(parents=True, exist_ok=True)
    encode(frames, args.out / "sample.mp4", args.fps)
    np.savez_compressed(
        args.out / "sample_gt.npz", K=seq.K_frame, global_orient=seq.global_orient,
        body_pose=seq.body_pose, betas=seq.betas, transl=seq.transl, joints3d=seq.joints3d,
        joints2d=seq.joints2d_frame, fps=np.float32(seq.fps), take=np.array(seq.take),
    )  # fmt: skip
    print(json.dumps({"video": str(args.out / "sample.mp4"), "frames": len(frames),
                      "fps": args.fps, "take": seq.take}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
