"""Paths recorded in shipped metadata (``engines.paths``)."""

from engines.model import DEFAULT_BUNDLE
from engines.paths import REPO_ROOT, repo_relative


def test_repo_relative_inside_and_outside_the_repository(tmp_path):
    assert repo_relative(DEFAULT_BUNDLE) == "engines/data/nbf_model.safetensors"
    assert repo_relative(REPO_ROOT / "engines" / ".." / "configs" / "train.yaml") == (
        "configs/train.yaml"
    )
    outside = tmp_path / "m.safetensors"
    assert repo_relative(outside) == str(outside.resolve())
