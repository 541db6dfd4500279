"""Fit settings: unknown keys, wrong types and out-of-range values are rejected."""

import pytest

from engines.fit_config import FitConfig


def test_from_dict_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ValueError, match="unknown"):
        FitConfig.from_dict({"warm_step": 3})
    with pytest.raises(ValueError, match="warm_steps"):
        FitConfig.from_dict({"warm_steps": "many"})
    with pytest.raises(ValueError, match="robust"):
        FitConfig.from_dict({"robust": 1})
    assert FitConfig.from_dict({"lr": 1}).lr == 1.0


def test_values_are_checked():
    with pytest.raises(ValueError, match="stage1_steps"):
        FitConfig(stage1_steps=-1)
    with pytest.raises(ValueError, match="M must be"):
        FitConfig(M=0)
    with pytest.raises(ValueError, match="clutter_components"):
        FitConfig(clutter_components=0)
    with pytest.raises(ValueError, match="orient_mode"):
        FitConfig(orient_mode="max")
