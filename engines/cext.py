"""Build and load the project's C++ ops (engines/csrc) with ``torch.utils.cpp_extension``.

Built on first use and cached outside the repository (``$TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``); needs a C++17 compiler (g++) and ninja on PATH.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import ModuleType

__all__ = ["CSRC", "load_extension"]

CSRC = Path(__file__).resolve().parent / "csrc"
_lock = threading.Lock()  # one build at a time per process
log = logging.getLogger("nbf.engines")
NOTICE_AFTER_S = 3.0  # a load still running after this is a build: say so (it takes minutes)


def load_extension(name: str, sources: list[str], openmp: bool, hint: str) -> ModuleType:
    """Compile (or load the cached) extension ``name`` from ``sources`` (file names in
    engines/csrc); ``RuntimeError`` naming ``hint`` (what works without it) if it cannot."""
    from torch.utils.cpp_extension import load

    omp = ["-fopenmp"] if openmp else []
    notice = threading.Timer(
        NOTICE_AFTER_S,
        log.warning,
        ("building the C++ extension %s (first run only, a minute or two; cached under "
         "$TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions)", name),
    )  # fmt: skip
    notice.daemon = True
    with _lock:
        notice.start()
        try:
            return load(name=name, sources=[str(CSRC / s) for s in sources],
                        extra_cflags=["-O3", *omp], extra_ldflags=omp, verbose=False)  # fmt: skip
        except (RuntimeError, OSError) as e:
            raise RuntimeError(
                f"could not build engines/csrc/{', '.join(sources)}: it needs a C++17 compiler "
                f"(g++) and ninja on PATH (pip install ninja); {hint}. Cause: {e}"
            ) from e
        finally:
            notice.cancel()
