"""The stage interface.

A stage is a small class that handles one message at a time. It declares what it consumes and
produces, its parameters as a ``Params`` dataclass (validated from YAML, unknown keys rejected),
and optional side channels (e.g. ``tracks`` fed back from fit to detect). The graph
(pipeline/graph.py) owns sockets, threads/processes, queues, metrics and end-of-stream handling;
a stage only transforms messages and never imports another stage.

Life cycle, in the thread or process that runs it::

    Cls.preflight(params)          # in the parent, before anything starts: fail early
    stage = Cls(params, context)   # in the worker (never pickled)
    stage.setup()
    source:  for msg in stage.produce(): ...      # until exhausted or context.draining()
    others:  for msg in inputs: outs = stage.process(msg)
    stage.flush()                  # at end of stream: last messages
    stage.close()                  # always
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from pipeline.messages import Event, FrameMessage, Message


@dataclass
class NoParams:
    """For stages without parameters."""


class DrainableError(RuntimeError):
    """A failure after which everything already produced should still be delivered.

    The graph forwards end-of-stream, lets every stage drain, then reports the error and the run
    exits non-zero (e.g. a truncated recording: publish what decodes, then fail).
    """


@dataclass
class StageContext:
    """What the graph gives a stage. Functions, not sockets: the graph does the I/O."""

    name: str
    stream_id: str
    emit_side: Callable[[str, Message], None]  # send on a declared side output
    draining: Callable[[], bool]  # True once the graph asks sources to stop (Ctrl-C)
    report: Callable[[Event], None]  # count + log an event (the stage also yields it downstream)
    logger: logging.Logger


class Stage:
    """Base class. Subclasses set the class attributes and override the hooks they need."""

    Params: ClassVar[type] = NoParams
    consumes: ClassVar[tuple[type, ...]] = (FrameMessage,)  # () for a source
    produces: ClassVar[tuple[type, ...]] = (FrameMessage,)  # () for a sink
    side_inputs: ClassVar[tuple[str, ...]] = ()
    side_outputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any, context: StageContext) -> None:
        self.params = params
        self.ctx = context

    @classmethod
    def is_source(cls) -> bool:
        return not cls.consumes

    @classmethod
    def preflight(cls, params: Any) -> None:
        """Check resources (files, devices, ports) before the graph starts; raise on failure."""

    @classmethod
    def is_live(cls, params: Any) -> bool:
        """Sources: whether the input is live (camera/network) rather than a recording."""
        return False

    @classmethod
    def expected_frames(cls, params: Any) -> int | None:
        """Sources: number of frames if known (for progress bars)."""
        return None

    def setup(self) -> None:
        """Load models, open devices/sockets. Runs in the worker."""

    def produce(self) -> Iterator[Message]:
        """Sources only: yield messages until the input ends or ``ctx.draining()``."""
        raise NotImplementedError(f"{type(self).__name__} is not a source")

    def process(self, msg: Message) -> Iterable[Message]:
        """Handle one input message; return the messages to send downstream."""
        raise NotImplementedError(f"{type(self).__name__}.process")

    def on_side(self, channel: str, msg: Message) -> None:
        """A message arrived on a declared side input."""

    def flush(self) -> Iterable[Message]:
        """End of stream: return any last messages (and write files)."""
        return ()

    def close(self) -> None:
        """Release resources; called even after errors."""
