"""Signal handlers installed for the duration of a block (the supervisor's and remote stages')."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["handling"]


@contextlib.contextmanager
def handling(handler: Callable[[int, Any], None], *signums: int) -> Iterator[None]:
    """``handler`` for ``signums`` while the block runs, the previous handlers restored after.
    Python delivers signals to the main thread only: elsewhere nothing is installed."""
    try:
        previous = [(s, signal.signal(s, handler)) for s in signums]
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, prev in previous:
            signal.signal(s, prev)
