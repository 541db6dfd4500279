"""Clothing-like appearance of the body mesh: garment groups, procedural textures, shading.

Garments are assigned per vertex from the rest (T-pose) geometry and the dominant skinning joint:
hair, skin, top (sleeve length sampled), bottom (trouser length sampled), shoes. Textures are solid
(3D) patterns evaluated per pixel at the rest-pose surface point, so they stick to the body as it
moves: plain, stripes, checks, plaid, noise. A texture is fully determined by its integer id; the
texture bank is split by id (``texture_split``): train and held-out ids never overlap.

Front/back-asymmetric details (``FrontDetails``, drawn from the garment textures' ids, so the
rest of a sample's random stream is unchanged): a face (eyes, brows, mouth), a neckline (crew, V
or scoop), a chest print, an open front (placket) and toe caps. Without them the only cue to
which way a body faces was hair at the back of the head, and a body and its front/back flip
looked alike wherever the layout of the parts was hidden.

Shading: Lambertian with ambient from interpolated vertex normals, one key light and one fill
light of random direction and colour (camera frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "GARMENTS",
    "Appearance",
    "FrontDetails",
    "Texture",
    "apply_front_details",
    "garment_groups",
    "sample_appearance",
    "sample_front_details",
    "sample_texture_id",
    "shade",
    "texture_split",
]

GARMENTS = ("skin", "hair", "top", "bottom", "shoes")
SKIN, HAIR, TOP, BOTTOM, SHOES = range(5)
PATTERNS = ("plain", "stripes", "checks", "plaid", "noise")
_HELDOUT_EVERY = 5  # texture ids with id % 5 == 0 are held out (val / eval)
_TEXTURE_IDS = 1_000_000


def texture_split(texture_id: int) -> str:
    """ "train" or "heldout" for a texture id."""
    return "heldout" if texture_id % _HELDOUT_EVERY == 0 else "train"


def sample_texture_id(rng: np.random.Generator, split: str) -> int:
    """A texture id of the given bank split ("train" or "heldout")."""
    n = int(rng.integers(0, _TEXTURE_IDS // _HELDOUT_EVERY))
    if split == "heldout":
        return n * _HELDOUT_EVERY
    if split != "train":
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return n * _HELDOUT_EVERY + 1 + int(rng.integers(0, _HELDOUT_EVERY - 1))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _cloth_colour(rng: np.random.Generator) -> np.ndarray:
    r = rng.random()
    if r < 0.3:  # greys, black, white
        return np.full(3, rng.uniform(0.04, 0.95)) * rng.uniform(0.95, 1.05, 3)
    if r < 0.5:  # muted (denim, khaki, olive)
        return _hsv(rng.random(), rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.7))
    return _hsv(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.25, 1.0))


@dataclass(frozen=True)
class Texture:
    """A solid texture: pattern, two colours, direction(s), period (m), phase, noise seed."""

    id: int
    pattern: str
    colour_a: np.ndarray  # [3] linear RGB in [0, 1]
    colour_b: np.ndarray  # [3]
    dirs: np.ndarray  # [2, 3] unit pattern directions
    period: float
    duty: float
    seed: int

    @classmethod
    def from_id(cls, texture_id: int) -> Texture:
        rng = np.random.default_rng([7919, int(texture_id)])
        pattern = PATTERNS[int(rng.choice(len(PATTERNS), p=[0.3, 0.25, 0.15, 0.15, 0.15]))]
        a = _cloth_colour(rng)
        b = _cloth_colour(rng) if rng.random() < 0.7 else a * rng.uniform(0.4, 0.8)
        d = rng.normal(size=(2, 3))
        d[0] /= np.linalg.norm(d[0])
        d[1] -= d[1] @ d[0] * d[0]
        d[1] /= np.linalg.norm(d[1])
        return cls(
            int(texture_id),
            pattern,
            a,
            b,
            d,
            float(math.exp(rng.uniform(math.log(0.015), math.log(0.2)))),
            float(rng.uniform(0.25, 0.75)),
            int(rng.integers(0, 2**31 - 1)),
        )

    def evaluate(self, p: torch.Tensor) -> torch.Tensor:  # [N, 3] rest points -> [N, 3] albedo
        """Albedo at rest-pose surface points (metres)."""
        a = torch.as_tensor(self.colour_a, dtype=p.dtype)
        b = torch.as_tensor(self.colour_b, dtype=p.dtype)
        if self.pattern == "plain":
            return a.expand(len(p), 3).clone()
        d = torch.as_tensor(self.dirs, dtype=p.dtype)
        t = p @ d.T / self.period  # [N, 2]
        frac = t - t.floor()
        if self.pattern == "stripes":
            m = (frac[:, 0] < self.duty).to(p.dtype)
        elif self.pattern == "checks":
            m = ((frac[:, 0] < 0.5) ^ (frac[:, 1] < 0.5)).to(p.dtype)
        elif self.pattern == "plaid":
            m = 0.5 * (frac[:, 0] < self.duty).to(p.dtype) + 0.5 * (frac[:, 1] < self.duty).to(
                p.dtype
            )
        else:  # noise: fractal value noise
            m = (_value_noise(p / self.period, self.seed) - 0.5) * 3.0 + 0.5
            m = m.clamp(0, 1)
        return a + (b - a) * m[:, None]


def _value_noise(x: torch.Tensor, seed: int, octaves: int = 3) -> torch.Tensor:  # [N, 3] -> [N]
    """Fractal 3D value noise in [0, 1] (hash lattice, smoothstep trilinear interpolation)."""
    out = torch.zeros(len(x), dtype=x.dtype)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        q = x * (2.0**o)
        i = q.floor().long()
        f = q - q.floor()
        f = f * f * (3 - 2 * f)
        acc = torch.zeros_like(out)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    h = (i[:, 0] + dx) * 73856093 ^ (i[:, 1] + dy) * 19349663
                    h = h ^ (i[:, 2] + dz) * 83492791 ^ (seed + o * 101)
                    h = (h * 2654435761) % 4294967291
                    val = (h % 10007).to(x.dtype) / 10006.0
                    wx = f[:, 0] if dx else 1 - f[:, 0]
                    wy = f[:, 1] if dy else 1 - f[:, 1]
                    wz = f[:, 2] if dz else 1 - f[:, 2]
                    acc += wx * wy * wz * val
        out += amp * acc
        total += amp
        amp *= 0.5
    return out / total


@dataclass(frozen=True)
class FrontDetails:
    """Details on the front of the body only (rest frame: y up, faces +z, left +x; metres)."""

    eye_colour: np.ndarray  # [3]
    lip_factor: np.ndarray  # [3] multiplies the skin colour
    neckline: str  # "crew" | "v" | "scoop": skin cut out of the top's front below the neck
    neck_depth: float  # how far below the neck joint the neckline reaches (m)
    neck_half_width: float  # (m)
    print_kind: str  # "none" | "disc" | "box" | "band": a contrasting print on the chest
    print_centre: tuple[float, float]  # (x, y) rest frame (m)
    print_size: float  # radius / half side / half height (m)
    print_colour: np.ndarray  # [3]
    placket: float  # half width of an open front showing an inner garment (0: none)
    placket_colour: np.ndarray  # [3]
    toe_cap: bool
    toe_colour: np.ndarray  # [3]


def sample_front_details(rng: np.random.Generator) -> FrontDetails:
    """Random front details (``sample_appearance`` seeds ``rng`` from the textures' ids)."""
    neck = str(rng.choice(["crew", "v", "scoop"], p=[0.3, 0.35, 0.35]))
    kind = str(rng.choice(["none", "disc", "box", "band"], p=[0.35, 0.25, 0.25, 0.15]))
    centre_x = 0.0 if rng.random() < 0.6 else float(rng.uniform(-0.07, 0.07))
    placket = float(rng.uniform(0.015, 0.06)) if rng.random() < 0.3 else 0.0
    return FrontDetails(
        eye_colour=_hsv(rng.uniform(0.05, 0.6), rng.uniform(0.2, 0.6), rng.uniform(0.04, 0.25)),
        lip_factor=np.array(
            [rng.uniform(0.7, 0.9), rng.uniform(0.4, 0.6), rng.uniform(0.45, 0.65)]
        ),
        neckline=neck,
        neck_depth=float(rng.uniform(0.01, 0.03) if neck == "crew" else rng.uniform(0.05, 0.16)),
        neck_half_width=float(rng.uniform(0.06, 0.11)),
        print_kind=kind,
        print_centre=(centre_x, float(rng.uniform(0.18, 0.34))),
        print_size=float(rng.uniform(0.035, 0.09)),
        print_colour=_cloth_colour(rng),
        placket=placket,
        placket_colour=_cloth_colour(rng),
        toe_cap=bool(rng.random() < 0.5),
        toe_colour=_cloth_colour(rng),
    )


@dataclass(frozen=True)
class Appearance:
    """One person's look: garment layout and per-garment textures, plus lighting."""

    sleeve: float  # top ends this fraction of the way shoulder (0) -> wrist (1)
    trouser: float  # bottom ends this fraction of the way hip (0) -> ankle (1)
    waist: float  # top/bottom boundary above the pelvis joint (m)
    hair: float  # hair coverage 0 (bald) .. 1 (long)
    shoe_height: float  # above the ankle joint (m)
    skin: np.ndarray  # [3]
    hair_colour: np.ndarray  # [3]
    textures: tuple[Texture, Texture, Texture]  # top, bottom, shoes
    key_dir: np.ndarray  # [3] unit, camera frame, surface -> light
    key_colour: np.ndarray  # [3]
    fill_dir: np.ndarray  # [3]
    fill_colour: np.ndarray  # [3]
    ambient: np.ndarray  # [3]
    details: FrontDetails


_SKIN_TONES = np.array(
    [[0.98, 0.82, 0.70], [0.90, 0.70, 0.55], [0.78, 0.57, 0.42], [0.62, 0.43, 0.30],
     [0.45, 0.30, 0.20], [0.30, 0.20, 0.13]]
)  # fmt: skip
_HAIR = np.array([[0.05, 0.04, 0.03], [0.2, 0.12, 0.06], [0.45, 0.3, 0.15], [0.8, 0.65, 0.4],
                  [0.6, 0.6, 0.6], [0.5, 0.15, 0.05]])  # fmt: skip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def sample_appearance(rng: np.random.Generator, split: str) -> Appearance:
    """Random appearance with textures from the ``split`` bank ("train" or "heldout")."""
    t = rng.random(2)
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.9, 1.1, 3)
    hair_c = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.85, 1.15, 3)
    tex = tuple(Texture.from_id(sample_texture_id(rng, split)) for _ in range(3))
    key = _unit(np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.6), -rng.uniform(0.2, 1.0)]))
    fill = _unit(np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(0.0, 1.0)]))
    warm = rng.uniform(-0.15, 0.15)
    key_c = rng.uniform(0.5, 1.0) * np.array([1 + warm, 1.0, 1 - warm])
    return Appearance(
        sleeve=float(rng.choice([0.0, 0.3, 0.5, 1.0, 1.0])) if t[0] < 0.9 else 1.0,
        trouser=float(rng.choice([0.35, 0.6, 0.9, 1.0, 1.0, 1.0])),
        waist=float(rng.uniform(0.0, 0.12)),
        hair=float(rng.uniform(0, 1)) if t[1] < 0.9 else 0.0,
        shoe_height=float(rng.uniform(0.02, 0.12)),
        skin=np.clip(skin, 0, 1),
        hair_colour=np.clip(hair_c, 0, 1),
        textures=tex,  # type: ignore[arg-type]
        key_dir=key,
        key_colour=key_c,
        fill_dir=fill,
        fill_colour=rng.uniform(0.0, 0.35) * rng.uniform(0.8, 1.2, 3),
        ambient=rng.uniform(0.2, 0.5) * rng.uniform(0.9, 1.1, 3),
        # a child stream keyed by the textures: the caller's stream is not advanced
        details=sample_front_details(np.random.default_rng([104729, *(t.id for t in tex)])),
    )


def garment_groups(
    rest_vertices: torch.Tensor,  # [V, 3] T-pose
    rest_joints: torch.Tensor,  # [24, 3]
    vertex_part: torch.Tensor,  # [V] dominant skinning joint 0..23
    app: Appearance,
) -> torch.Tensor:  # [V] garment index (GARMENTS)
    """Garment of every vertex for this appearance (body frame: y up, faces +z, left +x)."""
    v, J, part = rest_vertices, rest_joints, vertex_part
    g = torch.full((len(v),), SKIN, dtype=torch.long)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    torso = torch.isin(part, torch.tensor([0, 3, 6, 9, 13, 14, 1, 2]))
    # top: torso above the waist
    waist_y = J[0, 1] + app.waist
    g[torso & (y > waist_y)] = TOP
    # arms: sleeve along |x| from the shoulder to the wrist
    arm = torch.isin(part, torch.tensor([16, 17, 18, 19, 20, 21, 22, 23]))
    sh = J[16, 0].abs()
    wr = J[20, 0].abs()
    g[arm & (x.abs() < sh + app.sleeve * (wr - sh))] = TOP
    g[torch.isin(part, torch.tensor([13, 14])) & (y > waist_y)] = TOP
    # legs: trousers along y from the hip down to the ankle
    leg = torch.isin(part, torch.tensor([0, 1, 2, 4, 5, 7, 8, 10, 11]))
    hip_y, ank_y = J[1, 1], J[7, 1]
    end = hip_y + app.trouser * (ank_y - hip_y)
    g[leg & (y <= waist_y) & (y > end - 0.01)] = BOTTOM
    feet = torch.isin(part, torch.tensor([7, 8, 10, 11]))
    g[feet & (y < ank_y + app.shoe_height)] = SHOES
    # hair: top and back of the head
    head = torch.isin(part, torch.tensor([15, 12]))
    hy, hz = J[15, 1], J[15, 2]
    crown = y > hy + 0.06 - 0.05 * app.hair
    back = (z < hz - 0.02) & (y > hy - 0.12 * app.hair)
    if app.hair > 0.05:
        g[head & (crown | back)] = HAIR
    return g


def apply_front_details(
    albedo: torch.Tensor,  # [P, 3] per covered pixel
    points: torch.Tensor,  # [P, 3] rest-pose surface point
    normals: torch.Tensor,  # [P, 3] rest-pose unit normal
    garment: torch.Tensor,  # [P] GARMENTS index
    part: torch.Tensor,  # [P] dominant skinning joint 0..23
    rest_joints: torch.Tensor,  # [24, 3]
    app: Appearance,
) -> torch.Tensor:  # [P, 3]
    """``albedo`` with the appearance's front details painted on (a new tensor).

    Everything is placed in the rest frame (body faces +z) on surface points whose rest normal
    faces forward, so each detail sits on the front of the body and moves with it."""
    d, J = app.details, rest_joints
    out = albedo.clone()
    x, y, z = points.unbind(1)
    front = normals[:, 2]
    dt = albedo.dtype
    top = garment == TOP
    # neckline: the top's front cut away below the neck joint, showing skin
    neck_y, w = J[12, 1], d.neck_half_width
    u = (x.abs() / w).clamp(max=1.0)
    if d.neckline == "v":
        depth = d.neck_depth * (1 - u)
    elif d.neckline == "scoop":
        depth = d.neck_depth * (1 - u * u).sqrt()
    else:
        depth = d.neck_depth * (1 - u**4)
    cut = top & (front > 0.2) & (x.abs() < w) & (y > neck_y - depth)
    out[cut] = torch.as_tensor(app.skin, dtype=dt)
    top = top & ~cut
    # an open front showing an inner garment
    if d.placket > 0:
        sel = top & (front > 0.2) & (x.abs() < d.placket) & (y > J[0, 1] + app.waist)
        out[sel] = torch.as_tensor(d.placket_colour, dtype=dt)
    # a chest print
    if d.print_kind != "none":
        cx, cy = d.print_centre
        r = d.print_size
        if d.print_kind == "disc":
            inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        elif d.print_kind == "box":
            inside = ((x - cx).abs() < r) & ((y - cy).abs() < r)
        else:
            inside = (y - cy).abs() < r
        sel = top & (front > 0.35) & inside
        out[sel] = torch.as_tensor(d.print_colour, dtype=dt)
    # face: eyes, brows and mouth on skin in front of the head (neck part 12 holds the jaw)
    face = (garment == SKIN) & torch.isin(part, torch.tensor([12, 15])) & (front > 0.3)
    face &= y > J[15, 1] - 0.085
    if face.any():
        eye_y, eye_x = J[15, 1] + 0.04, 0.033
        eye = face & ((x.abs() - eye_x) ** 2 / 0.014**2 + (y - eye_y) ** 2 / 0.008**2 < 1)
        brow = face & ((x.abs() - eye_x).abs() < 0.02) & ((y - eye_y - 0.02).abs() < 0.004)
        mouth = face & (x.abs() < 0.024) & ((y - (J[15, 1] - 0.038)).abs() < 0.007)
        out[eye] = torch.as_tensor(d.eye_colour, dtype=dt)
        out[brow] = torch.as_tensor(app.hair_colour, dtype=dt) * 0.8
        lips = torch.as_tensor(app.skin * d.lip_factor, dtype=dt)
        out[mouth] = lips
    # toe caps on the front of the shoes
    if d.toe_cap:
        toes = (garment == SHOES) & torch.isin(part, torch.tensor([10, 11]))
        out[toes & (z > J[10, 2] + 0.015) & (front > -0.2)] = torch.as_tensor(
            d.toe_colour, dtype=dt
        )
    return out.clamp(0, 1)


def shade(
    albedo: torch.Tensor,  # [N, 3]
    normals: torch.Tensor,  # [N, 3] unit, camera frame
    app: Appearance,
) -> torch.Tensor:  # [N, 3] in [0, 1]
    """Lambertian key + fill light with ambient (two-sided normals: facing the camera)."""
    n = normals
    flip = (n[:, 2] > 0)[:, None]  # a normal pointing away from the camera: seen from inside
    n = torch.where(flip, -n, n)
    dt = albedo.dtype
    key = (n @ torch.as_tensor(app.key_dir, dtype=dt)).clamp(min=0)[:, None]
    fill = (n @ torch.as_tensor(app.fill_dir, dtype=dt)).clamp(min=0)[:, None]
    light = (
        torch.as_tensor(app.ambient, dtype=dt)
        + key * torch.as_tensor(app.key_colour, dtype=dt)
        + fill * torch.as_tensor(app.fill_colour, dtype=dt)
    )
    return (albedo * light).clamp(0, 1)
