"""Feature-network engines behind one interface (see ``base.py``)."""

from engines.backends.base import (
    BACKENDS,
    PRECISIONS,
    BackendUnavailableError,
    DeviceUnavailableError,
    EngineConfig,
    FeatureEngine,
    create_engine,
    default_cache_dir,
    load_model,
)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendUnavailableError",
    "DeviceUnavailableError",
    "EngineConfig",
    "FeatureEngine",
    "create_engine",
    "default_cache_dir",
    "load_model",
]
