"""Typed pipeline configuration loaded from YAML.

Every section is a dataclass; unknown keys and wrong types raise ``ConfigError`` naming the full
key path (e.g. ``stages[1].params.every_n``) before anything starts. Stage parameters are checked
against the stage class's own ``Params`` dataclass (see stages/base.py).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODES = ("threads", "processes")
PROTOCOLS = ("auto", "inproc", "ipc", "tcp")
POLICIES = ("auto", "block", "latest")
RUN_AS = ("auto", "thread", "process")


class ConfigError(ValueError):
    """Invalid configuration; the message names the offending key."""


@dataclass
class TransportConfig:
    protocol: str = "auto"  # auto: inproc for threads, ipc for processes; tcp for hosts
    tcp_host: str = "127.0.0.1"
    tcp_base_port: int = 0  # 0: pick free ports
    queue_size: int = 4  # messages buffered per queue (block policy)
    policy: str = "auto"  # auto: block for recorded files, latest for live sources
    control_port: int = 0  # stages on other hosts: supervisor's control sockets (port, port+1)
    remote_timeout_s: float = 60.0  # how long the supervisor waits for remote stages to start
    # stages on other hosts, after the start: a side of the control channel that hears nothing
    # from the other for this long gives up (the other was killed, or the network is down): a
    # remote stage stops with exit code 1, the supervisor fails the run naming the stage. The
    # supervisor broadcasts every 50 ms, a remote stage sends a heartbeat every 0.5 s
    control_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        _choice("transport.protocol", self.protocol, PROTOCOLS)
        _choice("transport.policy", self.policy, POLICIES)
        if self.queue_size < 1:
            raise ConfigError("transport.queue_size: must be >= 1")
        if self.control_timeout_s <= 0:
            raise ConfigError("transport.control_timeout_s: must be > 0")


@dataclass
class MetricsConfig:
    interval_s: float = 1.0  # how often metrics are published on the metrics topic
    window: int = 2048  # latency samples kept per stage for percentiles


@dataclass
class StageConfig:
    name: str
    type: str  # "decode" | "detect" | "features" | "fit" | "publish" | "package.module:Class"
    params: dict[str, Any] = field(default_factory=dict)
    policy: str = "auto"  # input queue policy override
    queue_size: int = 0  # 0: transport.queue_size
    host: str = ""  # "" = run by the supervisor; else this host runs it (python -m pipeline.remote)
    run_as: str = "auto"  # auto: the graph's mode; thread | process: this stage only

    def __post_init__(self) -> None:
        _choice(f"stage {self.name!r} policy", self.policy, POLICIES)
        _choice(f"stage {self.name!r} run_as", self.run_as, RUN_AS)


@dataclass
class PipelineConfig:
    stream_id: str = "cam0"
    mode: str = "threads"
    transport: TransportConfig = field(default_factory=TransportConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    stages: list[StageConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        _choice("mode", self.mode, MODES)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stages: duplicate stage names in {names}")
        if self.stream_id == "" or "/" in self.stream_id:
            raise ConfigError("stream_id: must be non-empty and contain no '/'")
        remote = [s.name for s in self.stages if s.host]
        if remote:
            t = self.transport
            if t.protocol != "tcp":
                raise ConfigError(
                    f"transport.protocol: must be tcp when stages {remote} have a host"
                )
            if t.tcp_base_port <= 0 or t.control_port <= 0:
                raise ConfigError(
                    "transport.tcp_base_port, transport.control_port: both must be set (> 0) "
                    f"when stages {remote} have a host"
                )

    def stage(self, type_: str) -> StageConfig | None:
        """The first stage of the given type, or None."""
        return next((s for s in self.stages if s.type == type_), None)


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def build(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from plain ``data``, rejecting unknown keys and wrong types."""
    where = path or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{_join(path, key)}: unknown key (allowed: {', '.join(sorted(names))})"
            )
    kwargs = {k: _coerce(v, hints[k], _join(path, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _coerce(v: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(v, a, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {v!r}")
    if tp is Any:
        return v
    if dataclasses.is_dataclass(tp):
        return build(tp, v, key)
    if origin is list or origin is tuple:
        if not isinstance(v, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(v).__name__}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        out = [_coerce(x, inner, f"{key}[{i}]") for i, x in enumerate(v)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(v).__name__}")
        _, inner = typing.get_args(tp)
        return {str(k): _coerce(x, inner, f"{key}.{k}") for k, x in v.items()}
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{key}: expected a number, got {type(v).__name__} {v!r}")
        return float(v)
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key}: expected an integer, got {type(v).__name__} {v!r}")
        return v
    if tp in (str, bool):
        if not isinstance(v, tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(v).__name__} {v!r}")
        return v
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML pipeline config (stage params are checked by the graph)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    return build(PipelineConfig, data, "")


def to_dict(obj: Any) -> Any:
    """Plain-data copy of a config dataclass (for passing to child processes)."""
    return dataclasses.asdict(obj)
