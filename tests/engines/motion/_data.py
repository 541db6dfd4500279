"""The shared CMU mocap takes, when present (tests that need them are skipped otherwise)."""

from pathlib import Path

import pytest

from engines.paths import mocap_dir


def _mocap() -> Path:
    try:
        return mocap_dir()
    except FileNotFoundError:
        return Path("/nonexistent")


MOCAP = _mocap()
needs_mocap = pytest.mark.skipif(not MOCAP.is_dir(), reason="shared mocap data not present")
