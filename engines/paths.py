"""Where the project finds data that is not shipped inside the package.

The team's shared folder (motion capture takes, sample images) sits beside the repository
(``<repo>/../shared``); ``$NBF_SHARED_DIR`` overrides it. Only training, evaluation and the
sample-clip generator read it; the streaming pipeline never does.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "mocap_dir", "repo_relative", "shared_dir"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it (for metadata that ships),
    else absolute."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p)


def shared_dir() -> Path:
    env = os.environ.get("NBF_SHARED_DIR")
    if env:
        return Path(env)
    for cand in (REPO_ROOT.parent / "shared", Path("/work/shared")):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(
        f"the shared data folder was not found beside the repository ({REPO_ROOT.parent}/shared);"
        " set NBF_SHARED_DIR"
    )


def mocap_dir() -> Path:
    """CMU motion-capture takes (``*.bvh``; ``holdout/`` is for evaluation only)."""
    env = os.environ.get("NBF_MOCAP_DIR")
    return Path(env) if env else shared_dir() / "data" / "mocap"
