"""Re-estimate a trained model's kernel feature bank from its final network.

    python -m engines.train.bank_refresh --out .cache/refresh/m.safetensors [--samples 4000]

During training each bank row (kernel ``k``, orientation bin ``o``) is an exponential moving
average, at momentum 0.9 (``BankConfig``), of the batch means of the features pooled onto it:
at the end a row is the weighted mean of its last ten or so updates, a few dozen observations
made by a network that was still changing. Here the trained network, frozen, is run on
``--samples`` fresh training-split renders, and every row seen at least ``--min-count`` times
becomes the normalised mean of all its unit pooled features (the same targets as training:
``engines.train.step.kernel_targets``, ``pool_slots`` and ``pool_min_weight`` from the
training config). Rows seen fewer times, and the clutter FIFO, are kept. The network's weights
are unchanged; the bundle's metadata records the refresh under ``bank_refresh``.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engines.body import BodyModel
from engines.featnet import FeatureNet, normalize_images
from engines.nbv import NeuralBodyVolume
from engines.train.contrastive import FeatureBank
from engines.train.step import kernel_targets

__all__ = ["accumulate_rows", "main", "refreshed_bank"]


@torch.no_grad()
def accumulate_rows(
    net: FeatureNet,
    body: BodyModel,
    nbv: NeuralBodyVolume,
    bank: FeatureBank,
    batches: Iterable[dict[str, torch.Tensor]],
    pool_slots: int = 10,
    pool_min_weight: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:  # -> [K*O, D] sums, [K*O] counts
    """Sum and count of the unit pooled kernel features of every bank row over ``batches``
    (training batches, :data:`engines.train.step.BATCH_KEYS`), with ``net`` in eval mode."""
    net = net.eval()
    sums = torch.zeros_like(bank.rows, dtype=torch.float64)  # [K*O, D]
    counts = torch.zeros(bank.rows.shape[0], dtype=torch.long)  # [K*O]
    for b in batches:
        feats = net(normalize_images(b["image"]))["features"]  # [B, D, h, w]
        t = kernel_targets(body, nbv, bank, b, feats, pool_slots, pool_min_weight)
        sums.index_add_(0, t.rows, t.feats.double())
        counts += torch.bincount(t.rows, minlength=counts.numel())
    return sums, counts


def refreshed_bank(
    bank: FeatureBank,
    sums: torch.Tensor,  # [K*O, D]
    counts: torch.Tensor,  # [K*O]
    min_count: int = 20,
) -> FeatureBank:
    """A copy of ``bank`` whose rows seen at least ``min_count`` times are the normalised
    ``sums``; the other rows, the clutter FIFO and ``bank`` itself are unchanged."""
    if sums.shape != bank.rows.shape or counts.shape != bank.rows.shape[:1]:
        raise ValueError(
            f"sums must be {tuple(bank.rows.shape)} and counts [{bank.rows.shape[0]}], got "
            f"{tuple(sums.shape)} and {tuple(counts.shape)}"
        )
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    out = copy.deepcopy(bank)
    keep = counts >= min_count  # [K*O]
    out.rows[keep] = F.normalize(sums[keep], dim=-1).to(out.rows.dtype)
    out.seen |= keep
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys
    import time

    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from engines.model import DEFAULT_BUNDLE, code_version, load_model
    from engines.paths import repo_relative
    from engines.synth.dataset import SynthConfig, SynthDataset
    from engines.train.config import load_train_config
    from engines.train.trainer import collate

    ap = argparse.ArgumentParser(prog="python -m engines.train.bank_refresh",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--config", default="configs/train.yaml", help="data and pooling settings")
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="model to refresh")
    ap.add_argument("--out", type=Path, required=True, help="bundle to write")
    ap.add_argument("--samples", type=int, default=4000, help="training-split renders")
    ap.add_argument("--min-count", type=int, default=20, help="observations a row needs")
    ap.add_argument("--seed", type=int, default=2000, help="which training samples")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args(argv)
    if min(args.samples, args.min_count, args.batch_size, args.threads) < 1:
        ap.error("--samples, --min-count, --batch-size and --threads must be >= 1")
    if args.workers < 0:
        ap.error("--workers must be >= 0")
    cfg = load_train_config(args.config)
    bundle = load_model(args.bundle)
    try:
        ds = SynthDataset(SynthConfig.from_dict(cfg.synth_data(bundle.net.config.input_size)),
                          "train")  # fmt: skip
    except ValueError as e:
        ap.error(str(e))
    if args.samples > len(ds):
        ap.error(f"--samples {args.samples} > the train split's {len(ds)}")
    torch.set_num_threads(args.threads)  # after every argument check

    idx = np.random.default_rng(args.seed).choice(len(ds), args.samples, replace=False)
    loader = DataLoader(Subset(ds, idx.tolist()), batch_size=args.batch_size,
                        num_workers=args.workers, collate_fn=collate)  # fmt: skip
    body = BodyModel.default()
    t0 = time.time()
    bar = tqdm(loader, desc="pool kernel features", unit="batch", file=sys.stderr)
    sums, counts = accumulate_rows(bundle.net, body, bundle.build_nbv(body), bundle.bank, bar,
                                   cfg.pool_slots, cfg.pool_min_weight)  # fmt: skip
    bank = refreshed_bank(bundle.bank, sums, counts, args.min_count)
    old, new = bundle.bank.rows, bank.rows
    changed = counts >= args.min_count
    cos = (old * new).sum(-1)[changed]  # [R]
    meta = dict(bundle.metadata)
    meta["bank_refresh"] = {
        "from": repo_relative(args.bundle),
        "from_bank_sha256": hashlib.sha256(old.numpy().tobytes()).hexdigest()[:16],
        "code_version": code_version(), "samples": args.samples, "seed": args.seed,
        "min_count": args.min_count, "rows_refreshed": int(changed.sum()),
        "rows": int(counts.numel()), "median_count": float(counts.float().median()),
        "median_cos_to_old": round(float(cos.median()), 4) if cos.numel() else None,
        "time_s": round(time.time() - t0, 1),
    }  # fmt: skip
    type(bundle)(bundle.net, bundle.nbv_config, bank, meta).save(args.out)
    r = meta["bank_refresh"]
    print(f"refreshed {r['rows_refreshed']} of {r['rows']} rows (median {r['median_count']:.0f} "
          f"observations, median cosine to the old row {r['median_cos_to_old']}); wrote "
          f"{args.out}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
