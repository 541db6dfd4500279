"""Feature network: compact ResNet backbone + U-Net decoder + PARE-style regression head.

Outputs (names are stable, the fitter and every engine backend use them; see ``OUTPUT_NAMES``):

- ``features``    ``[B, D, h, w]``  unit length along ``D`` (h = w = S / 4, stride 4)
- ``part_logits`` ``[B, 25, h, w]`` channel 0 = background, 1..24 = SMPL parts (joint order)
- ``pose6d``      ``[B, 24, 6]``    per joint (0 = global orient) the first two columns of R
                                    (docs/conventions.md; ``engines.rotations.rot6d_to_matrix``)
- ``betas``       ``[B, 10]``
- ``cam``         ``[B, 3]``        weak perspective ``[s, tx, ty]`` in crop coordinates [-1, 1]

Input: ``float32 [B, 3, S, S]`` RGB normalised with ImageNet mean/std (``normalize_images``).

Architecture. Stem of two stride-2 3x3 convs, four ResNet stages of BasicBlocks (widths w, 2w,
4w, 8w at strides 4, 8, 16, 32), a U-Net decoder (bilinear x2, concat skip, two 3x3 conv+BN+ReLU)
back to stride 4 with ``head_channels`` channels; a 1x1 conv gives the D-dim features (L2
normalised), a 1x1 conv the 25 part logits; each of the 24 part channels is a spatial softmax
that pools the stride-4 map (PARE's KeypointAttention); a per-joint linear map gives the 6D
rotation (plus, with ``pose_mlp`` > 0, a residual MLP over all 24 pooled features, which gives
every joint the whole body's context); a 1x1 conv to ``smpl_channels`` pooled by the same
attention (applied after pooling, ``FeatureNet.regress``), flattened, feeds two MLPs (betas,
camera). Final layers start near zero with biases
at a sensible default: every joint at identity except the global orient at R_x(pi) (upright,
facing the camera, docs/conventions.md), betas 0, camera [0.9, 0, 0].

Sizing, measured here (random weights, batch 1, median / min of 25 interleaved runs on this
2-core CPU while 4-5 other jobs shared it; onnxruntime with 1 or 2 intra-op threads, torch eager
with its default 2 threads). The pipeline must reach 15 fps (66 ms/frame) including detection
and fitting, so the network gets <= ~25 ms and preferably ~10:

====  =====  ======  ======  ===========  ===========  ============
S     width  blocks  params  ort 1 thr    ort 2 thr    torch 2 thr
====  =====  ======  ======  ===========  ===========  ============
160   16     1111    0.68M   6.3 / 4.8    6.6 / 3.9    21.1 / 14.0
192   16     1111    0.68M   8.5 / 6.9    7.6 / 4.9    49.6 / 21.2
224   16     1111    0.68M   11.0 / 9.1   7.5 / 5.8    37.3 / 22.8
256   16     1111    0.68M   16.0 / 12.9  9.6 / 8.0    48.1 / 38.7
192   24     1111    1.31M   11.4 / 10.6  8.7 / 6.2    42.6 / 25.8
192   32     1111    2.18M   15.4 / 14.6  9.0 / 8.3    37.9 / 28.9
192   16     2222    1.07M   15.1 / 8.1   8.5 / 5.0    38.9 / 19.0
====  =====  ======  ======  ===========  ===========  ============

(ms, median / min). D (32 vs 64) changed nothing measurable (the projection is one 1x1 conv).
Choice: S = 192 (48x48 feature maps: the renderer's cost scales with the map, 2.8x fewer
pixels than the original 80x80), width 24 (1.3M parameters, twice the capacity of width 16 for
~1 ms), blocks (1, 1, 1, 1), D = 64 (the paper's value), 64 head channels: ~6-12 ms with
onnxruntime at batch 1 (min over runs; medians rose to 30-55 ms while the load average was
3-7 on these 2 cores, see benchmarks/results/engines.json). The torch eager backend is 3-5x
slower here and its 2-thread pool degrades badly (medians up to ~0.9 s seen) when other
processes compete for the cores: on CPU use ``onnxruntime``. Re-measure with
``python -m benchmarks.engines``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.safetensors_io import read_with_metadata

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NUM_BETAS",
    "NUM_JOINTS",
    "NUM_PARTS",
    "OUTPUT_NAMES",
    "STRIDE",
    "FeatNetConfig",
    "FeatureNet",
    "batch_dynamic_shapes",
    "export_program",
    "normalize_images",
]

NUM_JOINTS = 24
NUM_PARTS = 25  # 0 = background, 1..24 = SMPL joints' parts
NUM_BETAS = 10
STRIDE = 4
OUTPUT_NAMES = ("features", "part_logits", "pose6d", "betas", "cam")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FORMAT = "nbfstream.featnet/1"


@dataclass(frozen=True)
class FeatNetConfig:
    """Feature network hyper-parameters. ``input_size`` S must be a multiple of 32."""

    input_size: int = 192
    width: int = 24
    blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    feature_dim: int = 64
    head_channels: int = 64
    smpl_channels: int = 16
    mlp_hidden: int = 128
    init_cam_scale: float = 0.9
    pose_mlp: int = 0  # > 0: hidden width of a residual MLP over all 24 joint features (6D)

    def __post_init__(self) -> None:
        if self.input_size <= 0 or self.input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {self.input_size}")
        for name in ("width", "feature_dim", "head_channels", "smpl_channels", "mlp_hidden"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pose_mlp < 0:
            raise ValueError(f"pose_mlp must be >= 0, got {self.pose_mlp}")
        blocks = tuple(int(b) for b in self.blocks)
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must be 4 positive ints, got {self.blocks}")
        object.__setattr__(self, "blocks", blocks)
        if not self.init_cam_scale > 0:
            raise ValueError(f"init_cam_scale must be > 0, got {self.init_cam_scale}")

    @property
    def feature_size(self) -> int:
        """Side of the stride-4 maps (h = w)."""
        return self.input_size // STRIDE

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatNetConfig:
        """Build from a mapping; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown FeatNetConfig keys: {unknown}")
        d = dict(d)
        if "blocks" in d:
            d["blocks"] = tuple(d["blocks"])
        return cls(**d)


def normalize_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``[B, S, S, 3]`` or ``[S, S, 3]`` -> float32 ``[B, 3, S, S]`` (ImageNet norm)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError("images must be uint8 RGB [B, H, W, 3] or [H, W, 3]")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [B, H, W, 3] or [H, W, 3], got {tuple(images.shape)}")
    dev = images.device
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=dev).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=dev).view(1, 3, 1, 1) * 255.0
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    return ((x - mean) / std).contiguous()


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.down is None else self.down(x)
        return F.relu(y + skip)


class _Up(nn.Module):
    """Bilinear x2, concat the skip, two 3x3 conv+BN+ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv_bn(cin + cskip, cout), _conv_bn(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


def _init_pose_bias() -> torch.Tensor:  # [24, 6]
    bias = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).repeat(NUM_JOINTS, 1)
    bias[0] = torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0, 0.0])  # R_x(pi): columns (1,0,0), (0,-1,0)
    return bias


class FeatureNet(nn.Module):
    """Backbone + U-Net decoder + PARE-style head. ``forward`` returns a dict (``OUTPUT_NAMES``)."""

    def __init__(self, config: FeatNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or FeatNetConfig()
        self.checkpoint_metadata: dict[str, Any] = {}  # filled by from_checkpoint
        w = cfg.width
        widths = (w, 2 * w, 4 * w, 8 * w)
        self.stem = nn.Sequential(_conv_bn(3, w, stride=2), _conv_bn(w, w, stride=2))
        stages, cin = [], w
        for i, (cout, n) in enumerate(zip(widths, cfg.blocks, strict=True)):
            layers = [_BasicBlock(cin, cout, 1 if i == 0 else 2)]
            layers += [_BasicBlock(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.up3 = _Up(widths[3], widths[2], widths[2])
        self.up2 = _Up(widths[2], widths[1], widths[1])
        self.up1 = _Up(widths[1], widths[0], cfg.head_channels)
        c = cfg.head_channels
        self.feature_proj = nn.Conv2d(c, cfg.feature_dim, 1, bias=False)
        self.part_head = nn.Conv2d(c, NUM_PARTS, 1)
        self.pose_weight = nn.Parameter(torch.empty(NUM_JOINTS, c, 6))
        self.pose_bias = nn.Parameter(_init_pose_bias())
        self.smpl_proj = nn.Conv2d(c, cfg.smpl_channels, 1)
        flat = NUM_JOINTS * cfg.smpl_channels
        self.shape_mlp = nn.Sequential(
            nn.Linear(flat, cfg.mlp_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.mlp_hidden, NUM_BETAS),
        )
        self.cam_mlp = nn.Sequential(
            nn.Linear(flat, cfg.mlp_hidden), nn.ReLU(inplace=True), nn.Linear(cfg.mlp_hidden, 3)
        )
        # every joint's rotation from all joints' features (global context, e.g. the facing)
        self.pose_mlp = None
        if cfg.pose_mlp:
            self.pose_mlp = nn.Sequential(
                nn.Linear(NUM_JOINTS * c, cfg.pose_mlp),
                nn.ReLU(inplace=True),
                nn.Linear(cfg.pose_mlp, NUM_JOINTS * 6),
            )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in self.modules():  # zero-init last BN of each residual branch
            if isinstance(blk, _BasicBlock):
                nn.init.zeros_(blk.bn2.weight)
        nn.init.normal_(self.pose_weight, std=1e-3)
        heads = [self.shape_mlp[2], self.cam_mlp[2]]
        if self.pose_mlp is not None:
            heads.append(self.pose_mlp[2])
        for head in heads:
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)
        with torch.no_grad():
            self.cam_mlp[2].bias.copy_(torch.tensor([self.config.init_cam_scale, 0.0, 0.0]))

    @property
    def input_size(self) -> int:
        return self.config.input_size

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # x: [B, 3, S, S]
        features, part_logits, pooled = self.pool(x)
        return {"features": features, "part_logits": part_logits, **self.regress(pooled)}

    def pool(
        self,
        x: torch.Tensor,  # [B, 3, S, S]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features ``[B, D, h, w]``, part logits ``[B, 25, h, w]`` and the head's input: the
        stride-4 map pooled by each part's spatial softmax, ``[B, 24, C]``."""
        S = self.config.input_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != S or x.shape[3] != S:
            raise ValueError(f"x must be [B, 3, {S}, {S}], got {tuple(x.shape)}")
        c1 = self.stages[0](self.stem(x))  # stride 4
        c2 = self.stages[1](c1)  # 8
        c3 = self.stages[2](c2)  # 16
        c4 = self.stages[3](c3)  # 32
        y = self.up1(self.up2(self.up3(c4, c3), c2), c1)  # [B, C, h, w]
        features = F.normalize(self.feature_proj(y), dim=1, eps=1e-6)  # [B, D, h, w]
        part_logits = self.part_head(y)  # [B, 25, h, w]
        attn = torch.softmax(part_logits[:, 1:].flatten(2), dim=-1)  # [B, 24, P]
        pooled = torch.bmm(attn, y.flatten(2).transpose(1, 2))  # [B, 24, C]
        return features, part_logits, pooled

    def regress(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:  # pooled: [B, 24, C]
        """``pose6d``, ``betas`` and ``cam`` from the part-pooled map alone. The 1x1
        ``smpl_proj`` is applied after pooling: it is linear and each attention map sums to
        1, so this equals pooling its output map (and costs 24 vectors, not h * w pixels)."""
        c = self.config.head_channels
        if pooled.ndim != 3 or pooled.shape[1] != NUM_JOINTS or pooled.shape[2] != c:
            raise ValueError(f"pooled must be [B, {NUM_JOINTS}, {c}], got {tuple(pooled.shape)}")
        pose6d = torch.einsum("bjc,jcn->bjn", pooled, self.pose_weight) + self.pose_bias
        if self.pose_mlp is not None:  # residual: starts at the per-joint estimate
            pose6d = pose6d + self.pose_mlp(pooled.flatten(1)).view(-1, NUM_JOINTS, 6)
        w = self.smpl_proj.weight.flatten(1)  # [Cs, C]
        smpl = (torch.matmul(pooled, w.t()) + self.smpl_proj.bias).flatten(1)  # [B, 24 * Cs]
        return {"pose6d": pose6d, "betas": self.shape_mlp(smpl), "cam": self.cam_mlp(smpl)}

    # ------------------------------------------------------------------ checkpoints
    def weights_hash(
        self, skip_modules: tuple[str, ...] = (), skip_config: tuple[str, ...] = ()
    ) -> str:
        """SHA-256 over the config and every parameter/buffer (name, dtype, shape, bytes),
        leaving out the tensors of the modules named in ``skip_modules`` (name prefixes) and the
        config fields in ``skip_config``."""
        cfg = {k: v for k, v in self.config.to_dict().items() if k not in skip_config}
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
        for name, t in sorted(self.state_dict().items()):
            if skip_modules and name.startswith(skip_modules):
                continue
            t = t.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def save_checkpoint(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``path`` (safetensors) and ``path`` with suffix ``.json`` (config + metadata)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata={"format": _FORMAT})
        meta = {
            "format": _FORMAT,
            "config": self.config.to_dict(),
            "weights_hash": self.weights_hash(),
            "metadata": metadata or {},
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return path

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> FeatureNet:
        """Load a checkpoint written by ``save_checkpoint``; the model is in eval mode."""
        meta, tensors = read_with_metadata(path, _FORMAT, "checkpoint", device=map_location)
        model = cls(FeatNetConfig.from_dict(meta["config"]))
        model.load_state_dict(tensors, strict=True)
        model.checkpoint_metadata = dict(meta.get("metadata", {}))
        return model.eval()

    @staticmethod
    def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
        """The JSON sidecar of a checkpoint (format, config, weights_hash, metadata)."""
        return json.loads(Path(path).with_suffix(".json").read_text())


def export_program(
    model: FeatureNet, max_batch: int = 8, example: torch.Tensor | None = None
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` (eval mode) with a dynamic batch dimension in [1, max_batch].

    ``example`` (``[B, 3, S, S]``, default zeros) sets dtype/device. torch.export specialises a
    size-1 dimension, so a batch-1 example is repeated to 2; ``max_batch == 1`` exports a static
    batch of 1.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    S = model.config.input_size
    if example is None:
        p = next(model.parameters())
        example = torch.zeros(1, 3, S, S, dtype=p.dtype, device=p.device)
    if example.ndim != 4 or tuple(example.shape[1:]) != (3, S, S):
        raise ValueError(f"example must be [B, 3, {S}, {S}], got {tuple(example.shape)}")
    if not 1 <= example.shape[0] <= max_batch:
        raise ValueError(f"example batch {example.shape[0]} outside [1, {max_batch}]")
    model = model.eval()
    if max_batch == 1:
        return torch.export.export(model, (example,))
    if example.shape[0] == 1:
        example = example.expand(2, -1, -1, -1).contiguous()
    return torch.export.export(model, (example,), dynamic_shapes=batch_dynamic_shapes(max_batch))


def batch_dynamic_shapes(max_batch: int) -> dict[str, dict[int, Any]] | None:
    """``dynamic_shapes`` for ``FeatureNet.forward(x)``: batch in [1, max_batch] (None if 1)."""
    if max_batch == 1:
        return None
    return {"x": {0: torch.export.Dim("batch", min=1, max=max_batch)}}
