"""What every benchmark records about its run, and how it reports (last line: one JSON object)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["emit", "environment"]


def environment(load0: float) -> dict[str, Any]:
    """1-minute load average at the start (``load0``) and now, the machine and torch version."""
    return {
        "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "torch": torch.__version__,
    }


def emit(result: dict[str, Any], path: Path, quick: bool) -> None:
    """Write ``result`` to ``path`` (full runs only) and print it as the last line."""
    if not quick:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
