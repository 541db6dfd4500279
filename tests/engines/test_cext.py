"""engines.cext: a load that takes long (a first-run build) is announced; a cached one is not."""

from __future__ import annotations

import logging
import time

import pytest
import torch.utils.cpp_extension

from engines import cext


def _fake_load(delay_s: float):
    def load(**kwargs):
        time.sleep(delay_s)
        return kwargs["name"]

    return load


def test_a_slow_load_says_it_is_building(monkeypatch, caplog):
    monkeypatch.setattr(cext, "NOTICE_AFTER_S", 0.05)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", _fake_load(0.5))
    with caplog.at_level(logging.WARNING, logger="nbf.engines"):
        assert cext.load_extension("nbf_test_ext", ["x.cpp"], False, "hint") == "nbf_test_ext"
    assert "building the C++ extension nbf_test_ext" in caplog.text


def test_a_fast_load_is_silent(monkeypatch, caplog):
    monkeypatch.setattr(cext, "NOTICE_AFTER_S", 0.3)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", _fake_load(0.0))
    with caplog.at_level(logging.WARNING, logger="nbf.engines"):
        cext.load_extension("nbf_test_ext", ["x.cpp"], False, "hint")
        time.sleep(0.5)  # past the notice's delay: it was cancelled
    assert "building" not in caplog.text


def test_a_failed_build_names_what_it_needs(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("ninja: not found")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", broken)
    with pytest.raises(RuntimeError, match=r"C\+\+17 compiler.*the torch fallback.*ninja: not"):
        cext.load_extension("nbf_test_ext", ["x.cpp"], False, "the torch fallback")
