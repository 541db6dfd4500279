"""Regression-head fine-tune on the frozen trunk (``python -m engines.train.head``).

The backbone, decoder, feature projection and part head stay exactly as they are, so the
features, the kernel bank, the clutter model and the fit's part term are unchanged; only the
pose, shape and camera heads train. Their input is the part-pooled map (``FeatureNet.pool``,
``[B, 24, C]``) and nothing else (``FeatureNet.regress``), so each sample is rendered and pooled
once, cached as ``.npy`` / ``.npz`` chunks, and the head then trains on those vectors for
several epochs, hundreds of times faster than a full training step.

The pose MLP is widened by ``extra_hidden`` hidden units (:class:`WideHead`). Their output
weights start at zero, so the network's outputs are unchanged at the start. During training
they see standardised inputs (the cached training inputs' mean and standard deviation), and
:meth:`WideHead.fold` folds that into their first layer. The result is a plain ``FeatureNet``
with a wider ``FeatNetConfig.pose_mlp`` and no new layer types. The sum of two one-hidden-layer
MLPs on the same input is one MLP with their hidden units side by side.

Samples come from the synthetic data engine with the training config's data settings: train
chunk ``c`` (1-based) is ``chunk_size`` indices drawn without replacement with seed ``c``; the
validation set is the first ``val_samples`` indices of the validation split (held-out takes,
textures and backgrounds). The epoch with the lowest validation PA-MPJPE is kept.

``--blend ALPHA`` ships :func:`blend_heads` of the fine-tuned and the starting network: the
pose output ``ALPHA * tuned + (1 - ALPHA) * start`` (per-joint weights mixed, the two pose MLPs
side by side with scaled output rows, so again one plain pose MLP), shape and camera the tuned
ones'. The wide heads gain on clean and randomly occluded images and lose under the
adversarial patch; the blend keeps most of the gain (README "Training and evaluation").
``--seeds 0,1`` fits one head per seed on the same cached inputs and averages their pose
outputs (:func:`average_heads`, again one plain pose MLP) before any blend.

The cache chunks are keyed by :func:`trunk_hash` (the weights ``pool`` depends on), the data
settings and the indices, so fine-tunes and blends of one trunk share them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from engines.body import BodyModel
from engines.featnet import NUM_JOINTS, FeatNetConfig, FeatureNet, normalize_images
from engines.metrics import mpjpe, pa_mpjpe
from engines.rotations import rot6d_to_matrix
from engines.train.config import TrainConfig, learning_rate
from engines.train.regression import RegressionWeights
from engines.train.step import body_joints_from_rotmats, regression_terms
from engines.train.trainer import collate

__all__ = [
    "TARGET_KEYS",
    "HeadFitConfig",
    "WideHead",
    "average_heads",
    "blend_heads",
    "build_cache",
    "cache_key",
    "evaluate_head",
    "fit_head",
    "head_parameters",
    "load_cache",
    "trunk_hash",
]

#: Per-sample targets cached beside the pooled inputs (float32, shapes as in ``BATCH_KEYS``).
TARGET_KEYS = ("K", "global_orient", "body_pose", "betas", "transl", "joints3d", "joints2d")
_HEAD_MODULES = ("pose_weight", "pose_bias", "pose_mlp", "smpl_proj", "shape_mlp", "cam_mlp")


@dataclass(frozen=True)
class HeadFitConfig:
    extra_hidden: int = 1024  # hidden units added to the pose MLP
    epochs: int = 6
    lr: float = 5e-4  # Adam, cosine to lr * 0.05 over all epochs
    batch_size: int = 64
    seed: int = 0
    # how the new units' inputs are scaled: "global" (one standard deviation for all of them)
    # or "feature" (each input's own; inputs with a tiny spread then get large weights, which
    # an occluder that moves them far outside it exploits, see the README)
    standardize: str = "global"
    # share of (sample, part) pairs whose pooled vector is replaced by its training mean while
    # training: no part's input may decide the pose alone (an occluder can corrupt any part)
    part_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("extra_hidden", "epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"head fit: {name} must be > 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"head fit: lr must be > 0, got {self.lr}")
        if not 0.0 <= self.part_dropout < 1.0:
            raise ValueError(f"head fit: part_dropout must be in [0, 1), got {self.part_dropout}")
        if self.standardize not in ("global", "feature"):
            raise ValueError(f"head fit: standardize must be global|feature, got "
                             f"{self.standardize!r}")  # fmt: skip


def head_parameters(net: FeatureNet) -> list[nn.Parameter]:
    """The parameters ``FeatureNet.regress`` uses (what this fine-tune trains)."""
    params: list[nn.Parameter] = []
    for name in _HEAD_MODULES:
        m = getattr(net, name)
        if isinstance(m, nn.Parameter):
            params.append(m)
        elif m is not None:
            params.extend(m.parameters())
    return params


class WideHead(nn.Module):
    """``net.regress`` plus ``extra_hidden`` new pose-MLP units on standardised inputs (their
    first layer initialised by ``nn.Linear`` with torch's generator seeded with ``seed``).

    ``net`` is deep-copied (the caller's network is never changed); ``mean`` / ``std`` are the
    flattened training inputs' statistics, ``[24 * C]``."""

    def __init__(self, net: FeatureNet, extra_hidden: int, mean: torch.Tensor,
                 std: torch.Tensor, seed: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        for p in head_parameters(self.net):
            p.requires_grad_(True)
        n_in = NUM_JOINTS * net.config.head_channels
        if mean.shape != (n_in,) or std.shape != (n_in,):
            raise ValueError(f"mean and std must be [{n_in}], got {tuple(mean.shape)}, "
                             f"{tuple(std.shape)}")  # fmt: skip
        if not bool((std > 0).all()):
            raise ValueError("std must be > 0 everywhere")
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clone())
        with torch.random.fork_rng(devices=[]):  # seeded, the global generator left as it was
            torch.manual_seed(seed)
            self.hidden = nn.Linear(n_in, extra_hidden)
        self.out = nn.Linear(extra_hidden, NUM_JOINTS * 6)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:  # [B, 24, C]
        res = self.net.regress(pooled)
        z = (pooled.flatten(1) - self.mean) / self.std
        extra = self.out(torch.relu(self.hidden(z))).view(-1, NUM_JOINTS, 6)
        return {**res, "pose6d": res["pose6d"] + extra}

    @torch.no_grad()
    def fold(self) -> FeatureNet:
        """A ``FeatureNet`` whose ``regress`` equals this module's forward (its pose MLP is
        ``pose_mlp + extra_hidden`` wide, the standardisation folded into the new rows)."""
        old = self.net
        w1 = self.hidden.weight / self.std  # [E, 24C]
        b1 = self.hidden.bias - w1 @ self.mean
        w2, b2 = self.out.weight, self.out.bias.clone()
        if old.pose_mlp is not None:
            w1 = torch.cat([old.pose_mlp[0].weight, w1])
            b1 = torch.cat([old.pose_mlp[0].bias, b1])
            w2 = torch.cat([old.pose_mlp[2].weight, w2], 1)
            b2 = b2 + old.pose_mlp[2].bias
        cfg = FeatNetConfig.from_dict({**old.config.to_dict(), "pose_mlp": int(w1.shape[0])})
        net = FeatureNet(cfg)
        state = {k: v for k, v in old.state_dict().items() if not k.startswith("pose_mlp.")}
        state.update({"pose_mlp.0.weight": w1, "pose_mlp.0.bias": b1,
                      "pose_mlp.2.weight": w2, "pose_mlp.2.bias": b2})  # fmt: skip
        net.load_state_dict({k: v.detach().clone().contiguous() for k, v in state.items()})
        return net.eval()


@torch.no_grad()
def blend_heads(start: FeatureNet, tuned: FeatureNet, alpha: float) -> FeatureNet:
    """A ``FeatureNet`` whose ``pose6d`` is ``alpha * tuned + (1 - alpha) * start`` and whose
    betas, camera and trunk are ``tuned``'s. Both must share the trunk (a head fine-tune of
    ``start``); neither is changed. Its pose MLP holds both MLPs' hidden units side by side."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    a, t = start.state_dict(), tuned.state_dict()
    trunk = [k for k in t if not k.startswith(_HEAD_MODULES)]
    if set(trunk) != {k for k in a if not k.startswith(_HEAD_MODULES)} or not all(
        torch.equal(a[k], t[k]) for k in trunk
    ):
        raise ValueError("blend_heads needs two networks with the same trunk weights")
    state = dict(t)
    for k in ("pose_weight", "pose_bias"):
        state[k] = alpha * t[k] + (1 - alpha) * a[k]
    w1, b1, w2, b2 = [], [], [], torch.zeros_like(t["pose_bias"]).flatten()
    for sd, scale in ((a, 1 - alpha), (t, alpha)):
        if "pose_mlp.0.weight" in sd:
            w1.append(sd["pose_mlp.0.weight"])
            b1.append(sd["pose_mlp.0.bias"])
            w2.append(scale * sd["pose_mlp.2.weight"])
            b2 = b2 + scale * sd["pose_mlp.2.bias"]
    state = {k: v for k, v in state.items() if not k.startswith("pose_mlp.")}
    width = sum(w.shape[0] for w in w1)
    if width:
        state.update({"pose_mlp.0.weight": torch.cat(w1), "pose_mlp.0.bias": torch.cat(b1),
                      "pose_mlp.2.weight": torch.cat(w2, 1), "pose_mlp.2.bias": b2})  # fmt: skip
    net = FeatureNet(FeatNetConfig.from_dict({**tuned.config.to_dict(), "pose_mlp": width}))
    net.load_state_dict({k: v.detach().clone().contiguous() for k, v in state.items()})
    return net.eval()


def average_heads(nets: list[FeatureNet]) -> FeatureNet:
    """A ``FeatureNet`` whose ``pose6d`` is the mean of ``nets``' (head fine-tunes with one
    trunk, e.g. fits with other seeds), by :func:`blend_heads` in turn (the k-th at weight 1/k),
    so its pose MLP holds all their hidden units; betas and camera are the last network's."""
    if not nets:
        raise ValueError("average_heads needs at least one network")
    out = nets[0]
    for k, net in enumerate(nets[1:], start=2):
        out = blend_heads(out, net, 1.0 / k)
    return out


# ---------------------------------------------------------------------------------- cache
#: FeatNetConfig fields only the heads use (``FeatureNet.pool`` does not depend on them)
_HEAD_CONFIG = ("smpl_channels", "mlp_hidden", "init_cam_scale", "pose_mlp")


def trunk_hash(net: FeatureNet) -> str:
    """``FeatureNet.weights_hash`` of what ``FeatureNet.pool`` depends on: the heads' modules
    and config fields left out, so head fine-tunes and blends of one network share it."""
    return net.weights_hash(skip_modules=_HEAD_MODULES, skip_config=_HEAD_CONFIG)


def cache_key(net: FeatureNet, data: dict[str, Any], split: str, indices: np.ndarray) -> str:
    """What a cache chunk depends on: the trunk's weights (:func:`trunk_hash`; the heads do not
    change the pooled inputs), the data settings and the indices."""
    h = hashlib.sha256(trunk_hash(net).encode())
    h.update(json.dumps({"data": data, "split": split}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()[:24]


def build_cache(
    net: FeatureNet, dataset: Dataset, indices: np.ndarray, prefix: Path, key: str,
    workers: int = 0, batch_size: int = 32, progress: bool = True,
) -> Path:  # fmt: skip
    """Render ``dataset[indices]``, pool them with ``net`` (eval mode) and write
    ``prefix_y.npy`` (``[N, 24, C]`` float32), ``prefix_t.npz`` (:data:`TARGET_KEYS`) and
    ``prefix.json`` (``key``). A chunk whose JSON already holds ``key`` is kept as it is."""
    from tqdm import tqdm

    prefix = Path(prefix)
    meta_path = prefix.with_suffix(".json")
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == key:
        return prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    loader = DataLoader(Subset(dataset, [int(i) for i in indices]), batch_size=batch_size,
                        num_workers=workers, collate_fn=collate)  # fmt: skip
    pooled, targets = [], {k: [] for k in TARGET_KEYS}
    with torch.no_grad():
        for b in tqdm(loader, desc=f"render {prefix.name}", unit="batch", disable=not progress):
            pooled.append(net.pool(normalize_images(b["image"]))[2].float())
            for k in TARGET_KEYS:
                targets[k].append(b[k].float())
    np.save(f"{prefix}_y.npy", torch.cat(pooled).numpy())
    np.savez(f"{prefix}_t.npz", **{k: torch.cat(v).numpy() for k, v in targets.items()})
    meta_path.write_text(json.dumps({"key": key, "n": len(indices)}))
    return prefix


def load_cache(prefixes: list[Path]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The pooled inputs ``[N, 24, C]`` and targets of the chunks, concatenated."""
    if not prefixes:
        raise ValueError("no cache chunks given")
    ys, ts = [], []
    for p in prefixes:
        ys.append(torch.from_numpy(np.load(f"{p}_y.npy", allow_pickle=False)).float())
        with np.load(f"{p}_t.npz", allow_pickle=False) as z:
            ts.append({k: torch.from_numpy(z[k]).float() for k in TARGET_KEYS})
    return torch.cat(ys), {k: torch.cat([t[k] for t in ts]) for k in TARGET_KEYS}


# ---------------------------------------------------------------------------------- training
@torch.no_grad()
def evaluate_head(head: nn.Module, body: BodyModel, pooled: torch.Tensor,
                  joints3d: torch.Tensor, batch: int = 256) -> dict[str, float]:  # fmt: skip
    """Root-aligned MPJPE and PA-MPJPE (mm) of ``head``'s joints against ``joints3d``."""
    preds = []
    for i in range(0, len(pooled), batch):
        out = head(pooled[i : i + batch])
        preds.append(body_joints_from_rotmats(body, rot6d_to_matrix(out["pose6d"]), out["betas"]))
    p, g = torch.cat(preds).numpy(), joints3d.numpy()
    return {"mpjpe": mpjpe(p, g), "pa_mpjpe": pa_mpjpe(p, g)}


def fit_head(
    net: FeatureNet, body: BodyModel, train: tuple[torch.Tensor, dict[str, torch.Tensor]],
    val: tuple[torch.Tensor, dict[str, torch.Tensor]], cfg: HeadFitConfig,
    weights: RegressionWeights | None = None, progress: bool = True,
) -> tuple[FeatureNet, list[dict[str, float]]]:  # fmt: skip
    """Train a :class:`WideHead` on cached inputs; the folded network of the epoch with the
    lowest validation PA-MPJPE and the per-epoch history (epoch 0: the network as given)."""
    from tqdm import tqdm

    weights = weights or RegressionWeights()
    y, t = train
    if len(y) < cfg.batch_size:
        raise ValueError(f"{len(y)} training samples, fewer than one batch of {cfg.batch_size}")
    flat = y.flatten(1)
    std = flat.std(0) if cfg.standardize == "feature" else flat.std().expand(flat.shape[1])
    head = WideHead(net, cfg.extra_hidden, flat.mean(0), std + 1e-3, seed=cfg.seed)
    part_mean = y.mean(0)  # [24, C]
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    size = net.config.input_size
    per_epoch = len(y) // cfg.batch_size
    total = cfg.epochs * per_epoch
    schedule = TrainConfig(steps=total, lr=cfg.lr, lr_schedule="cosine", lr_min_factor=0.05)
    g = torch.Generator().manual_seed(cfg.seed)
    history = [{"epoch": 0, **evaluate_head(head, body, val[0], val[1]["joints3d"])}]
    best, best_pa = head.fold(), history[0]["pa_mpjpe"]
    it = 0
    bar = tqdm(total=total, desc="head", unit="step", disable=not progress)
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(len(y), generator=g)
        for i in range(per_epoch):
            for group in opt.param_groups:
                group["lr"] = learning_rate(schedule, it)
            sel = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            inp = y[sel]
            if cfg.part_dropout > 0:
                drop = torch.rand(inp.shape[:2], generator=g) < cfg.part_dropout  # [b, 24]
                inp = torch.where(drop[..., None], part_mean, inp)
            targets = {k: v[sel] for k, v in t.items()}
            loss = regression_terms(body, head(inp), targets, weights, size)["total"]
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"non-finite head loss at epoch {epoch}, step {i}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            it += 1
            bar.update(1)
        rec = {"epoch": epoch, **evaluate_head(head, body, val[0], val[1]["joints3d"])}
        history.append(rec)
        bar.write(json.dumps({k: round(v, 2) for k, v in rec.items()}))
        if rec["pa_mpjpe"] < best_pa:
            best, best_pa = head.fold(), rec["pa_mpjpe"]
    bar.close()
    return best, history


# ---------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys
    import time

    from engines.model import DEFAULT_BUNDLE, load_model
    from engines.paths import repo_relative
    from engines.synth.dataset import SynthConfig, SynthDataset
    from engines.train.config import load_train_config

    ap = argparse.ArgumentParser(prog="python -m engines.train.head", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--config", default="configs/train.yaml", help="data and loss settings")
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="model to start from")
    ap.add_argument("--out", type=Path, required=True, help="bundle to write")
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache/head"))
    ap.add_argument("--chunks", type=int, default=6, help="training chunks to render / use")
    ap.add_argument("--chunk-size", type=int, default=20000)
    ap.add_argument(
        "--occluded-chunks",
        type=int,
        default=0,
        help="further training chunks in which every crop has an occluder",
    )
    ap.add_argument(
        "--occluded-coverage",
        type=float,
        nargs=2,
        default=(0.2, 0.6),
        metavar=("LO", "HI"),
        help="body fraction those occluders hide",
    )
    ap.add_argument("--val-samples", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--extra-hidden", type=int, default=HeadFitConfig.extra_hidden)
    ap.add_argument("--epochs", type=int, default=HeadFitConfig.epochs)
    ap.add_argument("--lr", type=float, default=HeadFitConfig.lr)
    ap.add_argument("--batch-size", type=int, default=HeadFitConfig.batch_size)
    ap.add_argument("--part-dropout", type=float, default=HeadFitConfig.part_dropout)
    ap.add_argument("--standardize", choices=("global", "feature"),
                    default=HeadFitConfig.standardize)  # fmt: skip
    ap.add_argument("--seeds", default="0", help="comma-separated: one head fit per seed, "
                    "their pose outputs averaged (average_heads)")  # fmt: skip
    ap.add_argument("--blend", type=float, default=1.0, metavar="ALPHA",
                    help="ship ALPHA * the tuned pose head + (1 - ALPHA) * the old")  # fmt: skip
    args = ap.parse_args(argv)
    if min(args.chunks, args.chunk_size, args.val_samples) <= 0:
        ap.error("--chunks, --chunk-size and --val-samples must be > 0")
    if args.occluded_chunks < 0:
        ap.error("--occluded-chunks must be >= 0")
    if not 0.0 < args.blend <= 1.0:
        ap.error("--blend must be in (0, 1]")
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if len(set(seeds)) != len(seeds):
        ap.error(f"--seeds repeats a seed: {args.seeds!r}")
    fit_cfg = HeadFitConfig(args.extra_hidden, args.epochs, args.lr, args.batch_size,
                            standardize=args.standardize,
                            part_dropout=args.part_dropout)  # fmt: skip
    cfg = load_train_config(args.config)
    bundle = load_model(args.bundle)
    net = bundle.net.eval()
    size = net.config.input_size
    data = cfg.synth_data(size)
    data["val_length"] = max(args.val_samples, SynthConfig().val_length)
    occ_data = {**data, "occlusion_prob": 1.0, "occlusion_coverage": list(args.occluded_coverage)}
    try:
        synth, occ_synth = SynthConfig.from_dict(data), SynthConfig.from_dict(occ_data)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(args.threads)  # after every argument check

    def chunk(split: str, name: str, idx: np.ndarray, ds: SynthDataset, d: dict) -> Path:
        key = cache_key(net, d, split, idx)
        return build_cache(net, ds, idx, args.cache_dir / name, key, workers=args.workers)

    def draw(seed: int) -> np.ndarray:
        return np.random.default_rng(seed).choice(len(train_ds), args.chunk_size, replace=False)

    train_ds = SynthDataset(synth, "train")
    if args.chunk_size > len(train_ds):
        ap.error(f"--chunk-size {args.chunk_size} > the train split's {len(train_ds)}")
    val = chunk("val", "val", np.arange(args.val_samples), SynthDataset(synth, "val"), data)
    train = [chunk("train", f"train{c}", draw(c), train_ds, data)
             for c in range(1, args.chunks + 1)]  # fmt: skip
    if args.occluded_chunks:  # other poses than the plain chunks' (seeds 1001, 1002, ...)
        occ_ds = SynthDataset(occ_synth, "train")
        train += [chunk("train", f"occluded{c}", draw(1000 + c), occ_ds, occ_data)
                  for c in range(1, args.occluded_chunks + 1)]  # fmt: skip
    t0 = time.time()
    body = BodyModel.default()
    weights = RegressionWeights.from_dict(cfg.regression)
    val_data = load_cache([val])
    train_data = load_cache(train)
    fits = [fit_head(net, body, train_data, val_data, dataclasses.replace(fit_cfg, seed=s),
                     weights) for s in seeds]  # fmt: skip
    history = fits[0][1]
    best = average_heads([f[0] for f in fits])
    if args.blend < 1.0:
        best = blend_heads(net, best, args.blend)
    shipped = {}  # the shipped head on the validation inputs, when it is not one fit's best
    if args.blend < 1.0 or len(seeds) > 1:
        shipped = evaluate_head(best.regress, body, val_data[0], val_data[1]["joints3d"])
    meta = dict(bundle.metadata)
    meta["head_fit"] = {
        "from": repo_relative(args.bundle), "from_weights_hash": net.weights_hash(),
        "config": fit_cfg.__dict__, "samples": len(train) * args.chunk_size,
        "occluded_chunks": args.occluded_chunks,
        "occluded_coverage": list(args.occluded_coverage),
        "val_samples": args.val_samples, "blend": args.blend, "blend_val": shipped,
        "seeds": seeds, "history": history, "seed_histories": [f[1] for f in fits[1:]],
        "time_s": round(time.time() - t0, 1),
    }  # fmt: skip
    type(bundle)(best, bundle.nbv_config, bundle.bank, meta).save(args.out)
    first, last = history[0], min(history, key=lambda r: r["pa_mpjpe"])
    blended = f", shipped {shipped['pa_mpjpe']:.1f}" if shipped else ""
    print(f"val PA-MPJPE {first['pa_mpjpe']:.1f} -> {last['pa_mpjpe']:.1f} mm (epoch "
          f"{last['epoch']}){blended}; wrote {args.out}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
