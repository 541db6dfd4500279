"""The shipped model bundle: feature network + NBV kernel features + clutter model.

One safetensors file (network weights under ``net.``, the feature bank under ``bank.``) and a
JSON sidecar with the configs, the body-model hash and the code version. ``load_model()`` with no
argument loads the default shipped in ``engines/data/``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engines.body import BodyModel
from engines.featnet import FeatNetConfig, FeatureNet
from engines.nbv import NBVConfig, NeuralBodyVolume
from engines.safetensors_io import read_with_metadata
from engines.train.contrastive import BankConfig, FeatureBank

__all__ = ["DEFAULT_BUNDLE", "ModelBundle", "body_model_hash", "code_version", "load_model"]

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "data" / "nbf_model.safetensors"
FORMAT = "nbfstream-model-v1"


def body_model_hash(body: BodyModel) -> str:
    h = hashlib.sha256()
    for name in ("v_template", "shapedirs", "J_regressor", "weights", "faces"):
        t = getattr(body, name).detach().contiguous().cpu()
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class ModelBundle:
    net: FeatureNet
    nbv_config: NBVConfig
    bank: FeatureBank
    metadata: dict[str, Any]

    def kernel_table(self) -> torch.Tensor:  # -> [K, O * D]
        return self.bank.kernel_table()

    def clutter(self, components: int = 1) -> torch.Tensor:  # -> [D] (1) or [N, D]
        """The fitting likelihood's clutter model: the mean clutter direction, or with
        ``components`` > 1 that many spherical k-means centres of the clutter FIFO."""
        if components == 1:
            return self.bank.clutter_direction()
        return self.bank.clutter_centres(components)

    def build_nbv(self, body: BodyModel) -> NeuralBodyVolume:
        nbv = NeuralBodyVolume(body, self.nbv_config)
        if nbv.num_kernels != self.bank.n_kernels:
            raise ValueError(
                f"model was trained with {self.bank.n_kernels} kernels, the NBV has "
                f"{nbv.num_kernels}"
            )
        return nbv

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.detach().cpu().contiguous()
                   for k, v in self.net.state_dict().items()}  # fmt: skip
        tensors.update({f"bank.{k}": v.detach().cpu().contiguous() for k, v in
                        self.bank.state_dict().items()})  # fmt: skip
        save_file(tensors, str(path), metadata={"format": FORMAT})
        meta = dict(self.metadata)
        meta.update(extra or {})
        meta.update(
            format=FORMAT,
            featnet=self.net.config.to_dict(),
            nbv=self.nbv_config.__dict__,
            bank={"n_kernels": self.bank.n_kernels, "n_bins": self.bank.n_bins,
                  "dim": self.bank.dim, **self.bank.config.__dict__},
        )  # fmt: skip
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return path


def load_model(path: str | Path | None = None) -> ModelBundle:
    """Load a bundle written by :meth:`ModelBundle.save` (pickle-free)."""
    path = Path(path) if path is not None else DEFAULT_BUNDLE
    meta, tensors = read_with_metadata(path, FORMAT, "model")
    net = FeatureNet(FeatNetConfig.from_dict(meta["featnet"]))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    b = dict(meta["bank"])
    bank = FeatureBank(b.pop("n_kernels"), b.pop("n_bins"), b.pop("dim"), BankConfig(**b))
    bank.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("bank.")})
    return ModelBundle(net.eval(), NBVConfig.from_dict(meta["nbv"]), bank, meta)
