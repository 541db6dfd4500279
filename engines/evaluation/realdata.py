"""Real evaluation data in the common preprocessed format (SPIN / mmhuman3d-style ``.npz``).

Keys read (``np.load(..., allow_pickle=False)``: object arrays are refused):

==============  ===================  ====================================================
imgname         [N] str              image path relative to ``image_root``
center          [N, 2]               bounding-box centre, frame pixels
scale           [N]                  bounding-box side / 200 (the crop window is square)
pose            [N, 72]              SMPL axis-angle, camera-frame global orientation first
shape           [N, 10]              SMPL betas
part            [N, 24, 3] optional  2D joints (SPIN's 24-joint order, LSP first) + conf
keypoints       [N, 49|24, 3] opt.   the same as ``part`` (49: 25 OpenPose, then the 24)
==============  ===================  ====================================================

The ground-truth camera is unknown, so the GT joints are our body model's joints for the GT
pose and shape with no translation: MPJPE (root-aligned) and PA-MPJPE need no camera. 3D GT in
``S`` uses another joint set and is not read. 2D GT (``part`` / ``keypoints``) gives the SMPL
joints that LSP also has (ankles, knees, hips, wrists, elbows, shoulders, neck), the PCKh head
size (LSP neck to head top, the released 3DNBF code's choice) and the joints the AdvOcc patch
covers; other joints have NaN 2D. The crop follows docs/conventions.md ("Crops") with a frame
camera of focal ``focal`` pixels (default: the image's larger side, ~53 deg field of view) and
the principal point at the image centre; the fit happens in that crop camera.

Frames are grouped into sequences by the directory of ``imgname``, in file order (preprocessed
files are often subsampled, e.g. every 30th 3DPW frame: warm starts then see large motions).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from engines.body import BodyModel

from .samples import EvalFrame, EvalSequence

__all__ = ["LSP_TO_SMPL", "RealDataset"]

#: (index in SPIN's 24-joint order, SMPL joint): the 12 LSP limb joints and the neck.
LSP_TO_SMPL = (
    (0, 8), (1, 5), (2, 2), (3, 1), (4, 4), (5, 7), (6, 21), (7, 19), (8, 17), (9, 16), (10, 18),
    (11, 20), (12, 12),
)  # fmt: skip
_NECK, _HEAD_TOP = 12, 13


def _require(data, key: str, shape_tail: tuple, path: Path) -> np.ndarray:
    if key not in data:
        raise ValueError(f"{path}: missing key {key!r}")
    a = np.asarray(data[key])
    if a.shape[1:] != shape_tail:
        raise ValueError(
            f"{path}: {key} must be [N, {', '.join(map(str, shape_tail))}], got {a.shape}"
        )
    return a


class RealDataset:
    """Crops and ground truth of a preprocessed ``.npz`` (module docstring)."""

    def __init__(
        self,
        npz_path: str | Path,
        image_root: str | Path,
        crop_size: int,
        focal: float | None = None,
        body: BodyModel | None = None,
        max_frames: int | None = None,
    ) -> None:
        path = Path(npz_path)
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path}: cannot load without pickle ({e})") from e
        with data:
            names = _require(data, "imgname", (), path)
            if names.dtype.kind not in "US":
                raise ValueError(f"{path}: imgname must be a string array, got {names.dtype}")
            self.imgname = [str(n) for n in names]
            N = len(self.imgname)
            self.center = _require(data, "center", (2,), path).astype(np.float64)
            self.scale = _require(data, "scale", (), path).astype(np.float64)
            self.pose = _require(data, "pose", (72,), path).astype(np.float32)
            self.shape = _require(data, "shape", (10,), path).astype(np.float32)
            kp = None
            if "part" in data:
                kp = np.asarray(data["part"], np.float64)
            elif "keypoints" in data:
                kp = np.asarray(data["keypoints"], np.float64)
                if kp.ndim == 3 and kp.shape[1] == 49:
                    kp = kp[:, 25:]
            if kp is not None and kp.shape[1:] != (24, 3):
                raise ValueError(
                    f"{path}: 2D joints must be [N, 24, 3] (or [N, 49, 3]), got {kp.shape}"
                )
            self.keypoints = kp
        for name in ("center", "scale", "pose", "shape"):
            if len(getattr(self, name)) != N:
                raise ValueError(f"{path}: {name} has {len(getattr(self, name))} rows, imgname {N}")
        if crop_size <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.n = N if max_frames is None else min(N, int(max_frames))
        self.root = Path(image_root)
        self.size = int(crop_size)
        self.focal = focal
        self.body = body if body is not None else BodyModel.default()

    def __len__(self) -> int:
        return self.n

    def window(self, i: int) -> tuple[float, float, float]:
        """Square crop window ``(bx, by, s)`` in frame pixels."""
        return float(self.center[i, 0]), float(self.center[i, 1]), 200.0 * float(self.scale[i])

    @torch.no_grad()
    def gt_joints(self, index: np.ndarray) -> np.ndarray:  # -> [n, 24, 3], no translation
        p = torch.from_numpy(self.pose[index])
        out = self.body(p[:, :3], p[:, 3:], torch.from_numpy(self.shape[index]))
        return out.joints.numpy().astype(np.float64)

    def frame(self, i: int, joints3d: np.ndarray | None = None) -> EvalFrame:
        from engines.synth.camera import crop_intrinsics
        from engines.synth.sequence import crop_from_frame

        if not 0 <= i < self.n:
            raise IndexError(f"frame {i} out of range [0, {self.n})")
        img_path = self.root / self.imgname[i]
        bgr = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read image {img_path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        H, W = rgb.shape[:2]
        f = float(self.focal) if self.focal else float(max(H, W))
        K_frame = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], np.float64)
        win = self.window(i)
        S = self.size
        crop = crop_from_frame(rgb, win, S)
        K = crop_intrinsics(K_frame, win, S)
        j3 = self.gt_joints(np.array([i]))[0] if joints3d is None else joints3d
        j2 = np.full((24, 2), np.nan)
        known = np.zeros(24, bool)
        conf = np.zeros(24, bool)
        head = float("nan")
        bx, by, s = win
        a = S / s
        if self.keypoints is not None:
            kp = self.keypoints[i]
            uv = (kp[:, :2] - np.array([bx, by]) + s / 2) * a - 0.5  # crop pixels
            for src, dst in LSP_TO_SMPL:
                j2[dst] = uv[src]
                known[dst] = True
                conf[dst] = kp[src, 2] > 0
            if kp[_NECK, 2] > 0 and kp[_HEAD_TOP, 2] > 0:
                head = float(np.linalg.norm(uv[_NECK] - uv[_HEAD_TOP]))
        inside = ((j2 >= -0.5) & (j2 < S - 0.5)).all(axis=1)  # False where unknown
        visible = ~(known & ~inside)
        return EvalFrame(
            image=crop, K=K, joints3d=j3, joints2d=j2, visible=visible,
            visible2d=known & conf & inside, head_size=head, silhouette=None,
        )  # fmt: skip

    def sequences(self) -> list[EvalSequence]:
        """All frames, grouped by image directory (file order kept)."""
        groups: dict[str, list[int]] = {}
        for i in range(self.n):
            groups.setdefault(str(Path(self.imgname[i]).parent), []).append(i)
        out = []
        for name, idx in groups.items():
            j3 = self.gt_joints(np.array(idx))
            out.append(EvalSequence(name, [self.frame(i, j3[k]) for k, i in enumerate(idx)]))
        return out
