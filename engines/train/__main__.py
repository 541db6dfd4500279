"""``python -m engines.train --config configs/train.yaml [--resume] [--steps N] [--export PATH]``

A warm restart of a shipped model (fresh optimiser, a new warm-up + cosine from ``--lr``):
``--resume-from engines/data/nbf_model.safetensors --schedule-start STEP --steps TOTAL --lr LR``
where STEP is the bundle's step; an interrupted run continues with ``--resume`` and the same
``--schedule-start``/``--steps``/``--lr``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines.train.config import load_train_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engines.train", description=__doc__)
    ap.add_argument("--config", default="configs/train.yaml")
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    ap.add_argument(
        "--resume-from",
        type=Path,
        help="continue from this bundle (e.g. engines/data/nbf_model.safetensors)",
    )
    ap.add_argument("--steps", type=int, help="override the number of steps")
    ap.add_argument("--out-dir", help="override out_dir")
    ap.add_argument("--threads", type=int, help="override threads (torch intra-op threads)")
    ap.add_argument("--lr", type=float, help="override lr (peak of the schedule)")
    ap.add_argument("--schedule-start", type=int, help="step where the LR schedule (re)starts")
    ap.add_argument("--device", help="override device (cpu, cuda, cuda:N, auto)")
    ap.add_argument("--workers", type=int, help="override workers (data rendering processes)")
    ap.add_argument("--export", type=Path, help="also write the final bundle here")
    args = ap.parse_args(argv)
    names = ("steps", "out_dir", "threads", "lr", "schedule_start", "device", "workers")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    cfg = load_train_config(args.config, overrides)

    from engines.synth.dataset import SynthConfig, SynthDataset
    from engines.train.trainer import Trainer

    data_cfg = SynthConfig.from_dict(cfg.synth_data(cfg.featnet.get("input_size", 192)))
    trainer = Trainer(cfg, SynthDataset(data_cfg, "train"), SynthDataset(data_cfg, "val"))
    if args.resume_from is not None:
        if not trainer.resume(args.resume_from):
            raise SystemExit(f"error: {args.resume_from} does not exist")
        print(f"resumed from {args.resume_from} at step {trainer.step_count}", file=sys.stderr)
    elif args.resume and trainer.resume():
        print(f"resumed at step {trainer.step_count}", file=sys.stderr)
    trainer.run()
    if args.export:
        trainer.bundle().save(args.export, {"history": trainer.history})
        print(f"wrote {args.export}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
