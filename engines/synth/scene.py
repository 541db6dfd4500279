"""Render one body crop with its ground truth (docs/conventions.md for every geometric quantity).

``BodyRenderer`` poses the body model in camera coordinates, rasterises the mesh into an S x S
crop, textures and shades it over a background, and computes the ground truth: 2D/3D joints,
silhouette, part map (1..24 = dominant SMPL skinning joint + 1, 0 = background) and, from the NBV
renderer at the feature-map resolution (S / stride, M = 1), per-kernel visibility and
orientation bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from engines.body import BodyModel
from engines.nbv import NeuralBodyVolume
from engines.render import Camera, render

from .appearance import (
    BOTTOM,
    HAIR,
    SHOES,
    SKIN,
    TOP,
    Appearance,
    apply_front_details,
    garment_groups,
)
from .appearance import shade as shade_pixels
from .camera import feature_intrinsics
from .raster import RasterOutput, project_points, rasterize, vertex_normals

__all__ = ["BodyRenderer", "CropRender"]


@dataclass
class CropRender:
    """A rendered crop and its ground truth (numpy, float32 / bool / int)."""

    image: np.ndarray  # [S, S, 3] uint8 RGB
    joints3d: np.ndarray  # [24, 3] camera frame (m)
    joints2d: np.ndarray  # [24, 2] crop pixels
    vertices: np.ndarray  # [V, 3] camera frame
    silhouette: np.ndarray  # [S, S] bool
    part_map: np.ndarray  # [S, S] uint8, 0 = background, 1..24
    garment_map: np.ndarray  # [S, S] int8, -1 = background, else GARMENTS index
    kernel_visible: np.ndarray  # [K] bool (NBV renderer, M = 1, feature-map resolution)
    kernel_front: np.ndarray  # [h, w] long front kernel per feature pixel (-1 = none)
    kernel_bin: np.ndarray  # [K] long orientation bin
    nbv_silhouette: np.ndarray  # [h, w] float NBV silhouette at the feature resolution


def _pixel_normals(
    normals: torch.Tensor,  # [V, 3] unit vertex normals
    tri: torch.Tensor,  # [P, 3] vertex ids of each pixel's face
    bary: torch.Tensor,  # [P, 3]
) -> torch.Tensor:  # [P, 3] unit
    """Vertex normals interpolated at the pixels and renormalised."""
    n = (bary[..., None] * normals[tri]).sum(1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-9)


class BodyRenderer:
    """Holds the body model, the NBV structure and per-vertex tables used to render crops."""

    def __init__(self, body: BodyModel | None = None, nbv: NeuralBodyVolume | None = None) -> None:
        self.body = body if body is not None else BodyModel.default()
        self.nbv = nbv if nbv is not None else NeuralBodyVolume(self.body)
        self.faces = self.body.faces
        self.vertex_part = self.body.weights.argmax(1)  # [V] 0..23
        self.rest_vertices = self.body.v_template  # [V, 3] texture coordinates
        self.rest_joints = self.body.J_template  # [24, 3]
        self.rest_normals = vertex_normals(self.rest_vertices, self.faces)  # [V, 3]

    @torch.no_grad()
    def pose(
        self,
        global_orient: torch.Tensor,  # [1, 3]
        body_pose: torch.Tensor,  # [1, 69]
        betas: torch.Tensor,  # [1, 10]
        transl: torch.Tensor,  # [1, 3]
    ) -> tuple[torch.Tensor, torch.Tensor]:  # ([V, 3], [24, 3])
        out = self.body(global_orient, body_pose, betas, transl)
        return out.vertices[0], out.joints[0]

    def albedo(
        self, raster: RasterOutput, groups: torch.Tensor, app: Appearance
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per covered pixel: (albedo [P, 3], dominant vertex [P], pixel index [P])."""
        pix = (raster.face_id.reshape(-1) >= 0).nonzero().squeeze(1)  # [P] covered pixels
        fid = raster.face_id.reshape(-1)[pix]
        b = raster.bary.reshape(-1, 3)[pix]  # [P, 3]
        tri = self.faces[fid]  # [P, 3]
        dom = tri.gather(1, b.argmax(1, keepdim=True))[:, 0]  # [P]
        p = (b[..., None] * self.rest_vertices[tri]).sum(1)  # [P, 3] rest surface point
        g = groups[dom]
        alb = torch.zeros(len(pix), 3)
        skin = torch.as_tensor(app.skin, dtype=torch.float32)
        alb[g == SKIN] = skin
        hair = g == HAIR
        if hair.any():
            streak = 0.75 + 0.5 * (torch.sin(p[hair, 0] * 900.0 + p[hair, 2] * 300.0) * 0.5 + 0.5)
            alb[hair] = torch.as_tensor(app.hair_colour, dtype=torch.float32) * streak[:, None]
        for gi, tex in zip((TOP, BOTTOM, SHOES), app.textures):
            sel = g == gi
            if sel.any():
                alb[sel] = tex.evaluate(p[sel]).float()
        n = _pixel_normals(self.rest_normals, tri, b)  # [P, 3] rest normal
        part = self.vertex_part[dom]
        alb = apply_front_details(alb.clamp(0, 1), p, n, g, part, self.rest_joints, app)
        return alb, dom, pix

    def render_image(
        self,
        verts: torch.Tensor,  # [V, 3] camera frame
        K: np.ndarray,  # [3, 3]
        size: tuple[int, int],  # (H, W)
        app: Appearance,
        background: np.ndarray,  # [H, W, 3] uint8
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Textured, shaded body over ``background``: (image [H, W, 3] uint8, silhouette [H, W]
        bool, part map [H, W] uint8 (0 = background, 1..24), garment map [H, W] int8)."""
        H, W = size
        if background.shape != (H, W, 3) or background.dtype != np.uint8:
            raise ValueError(f"background must be uint8 [{H}, {W}, 3], got {background.shape}")
        Kt = torch.as_tensor(K, dtype=torch.float32)
        ras = rasterize(verts, self.faces, Kt, (H, W), cull_backfaces=True)
        groups = garment_groups(self.rest_vertices, self.rest_joints, self.vertex_part, app)
        alb, dom, pix = self.albedo(ras, groups, app)
        normals = vertex_normals(verts, self.faces)
        tri = self.faces[ras.face_id.reshape(-1)[pix]]
        b = ras.bary.reshape(-1, 3)[pix]
        n = _pixel_normals(normals, tri, b)
        rgb = shade_pixels(alb, n, app)  # [P, 3]
        # composite with a soft 1-pixel edge
        mask = ras.mask.numpy()
        pn = pix.numpy()
        full = background.astype(np.float32).reshape(-1, 3).copy()
        full[pn] = rgb.numpy() * 255.0
        full = full.reshape(H, W, 3)
        k3 = np.ones((3, 3), np.uint8)
        m8 = mask.astype(np.uint8)
        edge = (cv2.dilate(m8, k3) - cv2.erode(m8, k3)).astype(bool)
        soft = cv2.GaussianBlur(full, (3, 3), 0.7)
        full[edge] = soft[edge]
        image = np.clip(full + 0.5, 0, 255).astype(np.uint8)
        part = np.zeros(H * W, np.uint8)
        part[pn] = (self.vertex_part[dom] + 1).numpy().astype(np.uint8)
        garment = np.full(H * W, -1, np.int8)
        garment[pn] = groups[dom].numpy().astype(np.int8)
        return image, mask, part.reshape(H, W), garment.reshape(H, W)

    def render_crop(
        self,
        params: dict[str, torch.Tensor],  # global_orient [1,3], body_pose [1,69], betas, transl
        K: np.ndarray,  # [3, 3] crop camera
        S: int,
        app: Appearance,
        background: np.ndarray,  # [S, S, 3] uint8
        stride: int = 4,
        posed: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> CropRender:
        """Render the body with ``params`` (camera frame) into an ``S x S`` crop with camera K.
        ``posed``: the already posed (vertices [V, 3], joints [24, 3]) of ``params``."""
        if S % stride:
            raise ValueError(f"crop size {S} must be a multiple of the stride {stride}")
        if posed is None:
            posed = self.pose(
                params["global_orient"], params["body_pose"], params["betas"], params["transl"]
            )
        verts, joints = posed
        image, mask, part, garment = self.render_image(verts, K, (S, S), app, background)
        # NBV ground truth at the feature-map resolution
        h = S // stride
        Kf = feature_intrinsics(np.asarray(K, np.float64), stride)
        cam = Camera(float(Kf[0, 0]), float(Kf[1, 1]), float(Kf[0, 2]), float(Kf[1, 2]), h, h)
        centres = verts[self.nbv.kernel_ids][None]
        with torch.no_grad():
            nb = render(centres, cam, M=1)
            bins = self.nbv.orientation_labels(joints[None])[0]
        j2d = project_points(joints.double(), torch.as_tensor(K, dtype=torch.float64))
        return CropRender(
            image=image,
            joints3d=joints.numpy().astype(np.float32),
            joints2d=j2d.numpy().astype(np.float32),
            vertices=verts.numpy(),
            silhouette=mask,
            part_map=part,
            garment_map=garment,
            kernel_visible=nb.visibility[0].numpy(),
            kernel_front=nb.idx[0, ..., 0].numpy(),
            kernel_bin=bins.numpy(),
            nbv_silhouette=nb.silhouette[0].numpy(),
        )
