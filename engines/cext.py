"""Build and load the project's C++ ops (engines/csrc) with ``torch.utils.cpp_extension``.

Built on first use and cached outside the repository, under ``$TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions``), in one folder per extension, checkout and torch version; needs a
C++17 compiler (g++) and ninja on PATH.

Builds are serialised across processes by an ``flock`` on the folder, which the kernel releases
when its holder dies. torch's own lock is a plain file that a build killed mid-way leaves behind,
and every later build of that folder then waits for it forever; holding the ``flock``, no build of
ours is running there, so such a file is stale and is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

__all__ = ["CSRC", "build_directory", "load_extension"]

CSRC = Path(__file__).resolve().parent / "csrc"
_lock = threading.Lock()  # one build at a time per process
log = logging.getLogger("nbf.engines")
NOTICE_AFTER_S = 3.0  # a load still running after this is a build: say so (it takes minutes)
TORCH_LOCK = "lock"  # the file torch.utils.cpp_extension's FileBaton creates in the folder
FLOCK = ".nbf-build.flock"


def build_directory(name: str) -> Path:
    """Where extension ``name`` is built: keyed by the checkout (the sources' path is in the
    build file, so two checkouts sharing a folder would rebuild each other's) and by the
    Python and torch versions."""
    import torch

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    tag = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__}"
    checkout = hashlib.sha1(str(CSRC).encode()).hexdigest()[:10]
    return Path(root) / tag / f"{name}-{checkout}"


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold the folder's build ``flock``; remove a stale torch lock left by a killed build."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: torch's own lock only
        yield
        return
    with open(folder / FLOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # waits while another live process builds here
        try:
            stale = folder / TORCH_LOCK
            if stale.exists():
                log.warning("removing %s, left by a build that was killed mid-way", stale)
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_extension(name: str, sources: list[str], openmp: bool, hint: str) -> ModuleType:
    """Compile (or load the cached) extension ``name`` from ``sources`` (file names in
    engines/csrc); ``RuntimeError`` naming ``hint`` (what works without it) if it cannot."""
    from torch.utils.cpp_extension import load

    omp = ["-fopenmp"] if openmp else []
    folder = build_directory(name)
    notice = threading.Timer(
        NOTICE_AFTER_S,
        log.warning,
        ("building the C++ extension %s (first run only, a minute or two; cached in %s)",
         name, folder),
    )  # fmt: skip
    notice.daemon = True
    with _lock:
        notice.start()
        try:
            with _exclusive(folder):
                return load(name=name, sources=[str(CSRC / s) for s in sources],
                            extra_cflags=["-O3", *omp], extra_ldflags=omp,
                            build_directory=str(folder), verbose=False)  # fmt: skip
        except (RuntimeError, OSError) as e:
            raise RuntimeError(
                f"could not build engines/csrc/{', '.join(sources)}: it needs a C++17 compiler "
                f"(g++) and ninja on PATH (pip install ninja); {hint}. Cause: {e}"
            ) from e
        finally:
            notice.cancel()
