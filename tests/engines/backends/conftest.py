"""Fixtures for the engine-backend tests."""

from __future__ import annotations

import pytest

from engines.featnet import FeatureNet
from tests.engines.backends._models import randomized


@pytest.fixture(scope="module")
def small_model() -> FeatureNet:
    return randomized()
