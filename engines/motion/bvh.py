"""BVH motion files: parse, forward kinematics, write (float64 numpy).

Rotation channels compose in the order listed: channels ``Zrotation Xrotation Yrotation`` give
``R = Rz(z) @ Rx(x) @ Ry(y)`` (column vectors, docs/conventions.md). A joint's global rotation
is ``G_j = G_parent @ R_j`` and its position ``p_j = p_parent + G_parent @ (offset_j + t_j)``,
``t_j`` the joint's position channels (3 or 6 channels per joint, any order). End sites become
extra leaf joints named ``<parent>_end`` with no channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "BVH",
    "bvh_from_rotations",
    "euler_to_matrix",
    "matrix_to_euler",
    "read_bvh",
    "write_bvh",
]

_AXES = {"X": 0, "Y": 1, "Z": 2}


def _axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:  # angle [T] rad -> [T, 3, 3]
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros((*angle.shape, 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:  # [T, 3] -> [T, 3, 3]
    """``order`` like "ZXY": R = R_Z(a0) @ R_X(a1) @ R_Y(a2), angles in degrees."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    R = np.broadcast_to(np.eye(3), (*a.shape[:-1], 3, 3)).copy()
    for k, ax in enumerate(order):
        R = R @ _axis_rotation(_AXES[ax], a[..., k])
    return R


def matrix_to_euler(R: np.ndarray, order: str) -> np.ndarray:  # [T, 3, 3] -> [T, 3] degrees
    """Inverse of :func:`euler_to_matrix` for Tait-Bryan orders (three distinct axes)."""
    i, j, k = (_AXES[c] for c in order)
    if len({i, j, k}) != 3:
        raise ValueError(f"order must name three distinct axes, got {order!r}")
    sign = 1.0 if (j - i) % 3 == 1 else -1.0  # even permutation of XYZ
    a1 = np.arcsin(np.clip(sign * R[..., i, k], -1.0, 1.0))
    a0 = np.arctan2(-sign * R[..., j, k], R[..., k, k])
    a2 = np.arctan2(-sign * R[..., i, j], R[..., i, i])
    return np.rad2deg(np.stack([a0, a1, a2], axis=-1))


@dataclass
class BVH:
    names: list[str]
    parents: list[int]  # -1 for the root
    offsets: np.ndarray  # [J, 3] file units
    channels: list[list[str]]  # per joint, e.g. ["Xposition", ..., "Zrotation", ...]
    motion: np.ndarray  # [T, total channels]
    frame_time: float
    end_sites: set[int] = field(default_factory=set)  # indices of end-site pseudo joints

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    def index(self, name: str) -> int:
        return self.names.index(name)

    def _channel_slices(self) -> list[slice]:
        out, c = [], 0
        for ch in self.channels:
            out.append(slice(c, c + len(ch)))
            c += len(ch)
        return out

    def local_rotations(self) -> np.ndarray:  # -> [T, J, 3, 3]
        T, J = self.num_frames, len(self.names)
        R = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
        for j, (ch, sl) in enumerate(zip(self.channels, self._channel_slices())):
            rot = [(c[0], k) for k, c in enumerate(ch) if c.endswith("rotation")]
            if rot:
                order = "".join(c for c, _ in rot)
                cols = [sl.start + k for _, k in rot]
                R[:, j] = euler_to_matrix(self.motion[:, cols], order)
        return R

    def translations(self) -> np.ndarray:  # -> [T, J, 3] file units
        """Position channels per joint (zero where a joint has none)."""
        out = np.zeros((self.num_frames, len(self.names), 3))
        for j, (ch, sl) in enumerate(zip(self.channels, self._channel_slices())):
            for k, c in enumerate(ch):
                if c.endswith("position"):
                    out[:, j, _AXES[c[0]]] = self.motion[:, sl.start + k]
        return out

    def root_positions(self) -> np.ndarray:  # -> [T, 3] file units
        return self.translations()[:, 0]

    def rest_positions(self, scale: float = 1.0) -> np.ndarray:  # -> [J, 3]
        """Joint positions with every channel zero (the skeleton's rest pose), root at origin
        plus its offset."""
        P = np.empty((len(self.names), 3))
        for j, p in enumerate(self.parents):
            P[j] = self.offsets[j] * scale + (P[p] if p >= 0 else 0.0)
        return P

    def forward_kinematics(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Global rotations ``[T, J, 3, 3]`` and positions ``[T, J, 3]`` (file units x scale)."""
        R = self.local_rotations()
        T, J = R.shape[:2]
        G = np.empty_like(R)
        P = np.empty((T, J, 3))
        trans = self.translations()
        for j, p in enumerate(self.parents):
            local = (self.offsets[j] + trans[:, j]) * scale  # [T, 3]
            if p < 0:
                G[:, j] = R[:, j]
                P[:, j] = local
            else:
                G[:, j] = G[:, p] @ R[:, j]
                P[:, j] = P[:, p] + (G[:, p] @ local[..., None])[..., 0]
        return G, P


def read_bvh(path: str | Path) -> BVH:
    """Parse a BVH file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BVH file {path} does not exist")
    tokens = path.read_text(errors="replace").split()
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    end_sites: set[int] = set()
    stack: list[int] = []
    i = 0

    def fail(msg: str):
        raise ValueError(f"{path}: malformed BVH ({msg})")

    if not tokens or tokens[0] != "HIERARCHY":
        fail("missing HIERARCHY")
    i = 1
    pending = -1
    while i < len(tokens) and tokens[i] != "MOTION":
        t = tokens[i]
        if t in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append([])
            pending = len(names) - 1
            i += 2
        elif t == "End":
            names.append(f"{names[stack[-1]]}_end")
            parents.append(stack[-1])
            offsets.append([0.0, 0.0, 0.0])
            channels.append([])
            pending = len(names) - 1
            end_sites.add(pending)
            i += 2
        elif t == "{":
            if pending < 0:
                fail("unexpected '{'")
            stack.append(pending)
            pending = -1
            i += 1
        elif t == "}":
            if not stack:
                fail("unbalanced '}'")
            stack.pop()
            i += 1
        elif t == "OFFSET":
            try:
                off = [float(x) for x in tokens[i + 1 : i + 4]]
            except ValueError:
                off = []
            if len(off) != 3 or not stack:
                fail("bad OFFSET")
            offsets[stack[-1]] = off
            i += 4
        elif t == "CHANNELS":
            try:
                n = int(tokens[i + 1])
            except (ValueError, IndexError):
                fail("bad CHANNELS")
            if not stack or any(not c.endswith(("position", "rotation")) or c[0] not in _AXES
                                for c in tokens[i + 2 : i + 2 + n]):  # fmt: skip
                fail("bad CHANNELS")
            channels[stack[-1]] = tokens[i + 2 : i + 2 + n]
            i += 2 + n
        else:
            fail(f"unexpected token {t!r}")
    if stack or i >= len(tokens):
        fail("hierarchy not closed or no MOTION section")
    try:
        n_frames = int(tokens[i + 2])
        frame_time = float(tokens[i + 5])
        values = np.asarray(tokens[i + 6 :], dtype=np.float64)
    except (ValueError, IndexError):
        fail("bad MOTION header")
    n_ch = sum(len(c) for c in channels)
    if n_ch == 0 or values.size < n_frames * n_ch:
        fail(f"expected {n_frames} frames of {n_ch} channels, found {values.size} values")
    motion = values[: n_frames * n_ch].reshape(n_frames, n_ch)
    return BVH(names, parents, np.asarray(offsets), channels, motion, frame_time, end_sites)


def write_bvh(path: str | Path, bvh: BVH, precision: int = 6) -> Path:
    """Write ``bvh`` (end-site pseudo joints become ``End Site`` blocks). Joints are written
    depth first, so :func:`read_bvh` returns them in that order (names are kept)."""
    path = Path(path)
    children: dict[int, list[int]] = {j: [] for j in range(len(bvh.names))}
    for j, p in enumerate(bvh.parents):
        if p >= 0:
            children[p].append(j)
    roots = [j for j, p in enumerate(bvh.parents) if p < 0]
    if len(roots) != 1:
        raise ValueError(f"bvh must have exactly one root, got {len(roots)}")
    lines = ["HIERARCHY"]
    columns: list[np.ndarray] = []
    slices = bvh._channel_slices()

    def emit(j: int, depth: int) -> None:
        ind = "  " * depth
        off = " ".join(f"{v:.{precision}f}" for v in bvh.offsets[j])
        if j in bvh.end_sites:
            lines.extend([f"{ind}End Site", f"{ind}{{", f"{ind}  OFFSET {off}", f"{ind}}}"])
            return
        kind = "ROOT" if bvh.parents[j] < 0 else "JOINT"
        lines.extend([f"{ind}{kind} {bvh.names[j]}", f"{ind}{{", f"{ind}  OFFSET {off}"])
        if bvh.channels[j]:
            lines.append(f"{ind}  CHANNELS {len(bvh.channels[j])} {' '.join(bvh.channels[j])}")
            columns.append(bvh.motion[:, slices[j]])
        for c in children[j]:
            emit(c, depth + 1)
        lines.append(f"{ind}}}")

    emit(roots[0], 0)
    motion = np.concatenate(columns, axis=1) if columns else bvh.motion
    lines += ["MOTION", f"Frames: {bvh.num_frames}", f"Frame Time: {bvh.frame_time:.8f}"]
    fmt = " ".join([f"%.{precision}f"] * motion.shape[1])
    lines += [fmt % tuple(row) for row in motion]
    path.write_text("\n".join(lines) + "\n")
    return path


def bvh_from_rotations(
    names: list[str],
    parents: list[int],
    offsets: np.ndarray,  # [J, 3] file units, parents before children
    local_rotations: np.ndarray,  # [T, J, 3, 3]
    root_positions: np.ndarray,  # [T, 3] file units (root channel values)
    frame_time: float,
    order: str = "ZYX",
    end_sites: dict[int, np.ndarray] | None = None,  # joint -> end-site offset [3]
) -> BVH:
    """A BVH with a 6-channel root and 3 rotation channels per joint in ``order`` (the channel
    values are Euler angles of ``local_rotations``); ``end_sites`` adds End Site blocks."""
    offsets = np.asarray(offsets, dtype=np.float64)
    J = len(names)
    if len(parents) != J or offsets.shape != (J, 3):
        raise ValueError(f"parents must have {J} entries and offsets shape [{J}, 3]")
    if any(p >= j for j, p in enumerate(parents)):
        raise ValueError("parents must precede their children")
    R = np.asarray(local_rotations, dtype=np.float64)
    if R.ndim != 4 or R.shape[1:] != (J, 3, 3):
        raise ValueError(f"local_rotations must be [T, {J}, 3, 3], got {R.shape}")
    T = R.shape[0]
    root_positions = np.asarray(root_positions, dtype=np.float64)
    if root_positions.shape != (T, 3):
        raise ValueError(f"root_positions must be [{T}, 3], got {root_positions.shape}")
    rot_ch = [f"{a}rotation" for a in order]
    channels = [[f"{a}position" for a in "XYZ"] + rot_ch] + [list(rot_ch) for _ in range(J - 1)]
    euler = matrix_to_euler(R, order).reshape(T, J * 3)
    motion = np.concatenate([root_positions, euler], axis=1)
    names, parents, offs = list(names), list(parents), list(offsets)
    chans, ends = channels, set()
    for j, off in sorted((end_sites or {}).items()):
        names.append(f"{names[j]}_end")
        parents.append(j)
        offs.append(np.asarray(off, dtype=np.float64))
        chans.append([])
        ends.add(len(names) - 1)
    return BVH(names, parents, np.asarray(offs), chans, motion, float(frame_time), ends)
