"""engines.cext: a load that takes long (a first-run build) is announced; a cached one is not;
builds are serialised across processes and survive a build that was killed mid-way."""

from __future__ import annotations

import fcntl
import logging
import subprocess
import sys
import threading
import time

import pytest
import torch.utils.cpp_extension

from engines import cext


@pytest.fixture(autouse=True)
def _private_build_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))


def _fake_load(delay_s: float, calls: list | None = None):
    def load(**kwargs):
        time.sleep(delay_s)
        if calls is not None:
            calls.append(kwargs)
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


def test_a_stale_torch_lock_from_a_killed_build_is_removed(monkeypatch, caplog):
    """torch's lock file, left by a build killed mid-way, made every later build wait forever
    (a CI run hung 90 minutes on one); holding our flock, nobody is building, so it goes."""
    calls = []
    monkeypatch.setattr(torch.utils.cpp_extension, "load", _fake_load(0.0, calls))
    folder = cext.build_directory("nbf_test_ext")
    folder.mkdir(parents=True)
    (folder / cext.TORCH_LOCK).touch()
    with caplog.at_level(logging.WARNING, logger="nbf.engines"):
        cext.load_extension("nbf_test_ext", ["x.cpp"], False, "hint")
    assert not (folder / cext.TORCH_LOCK).exists() and "killed mid-way" in caplog.text
    assert calls[0]["build_directory"] == str(folder)


def test_a_build_waits_for_one_running_in_another_process(monkeypatch):
    """The flock is per open file, so a second open of it stands in for another process."""
    calls = []
    monkeypatch.setattr(torch.utils.cpp_extension, "load", _fake_load(0.0, calls))
    folder = cext.build_directory("nbf_test_ext")
    folder.mkdir(parents=True)
    with open(folder / cext.FLOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (folder / cext.TORCH_LOCK).touch()  # that build's own lock: live, not stale
        t = threading.Thread(
            target=cext.load_extension, args=("nbf_test_ext", ["x.cpp"], False, "h")
        )
        t.start()
        time.sleep(0.3)
        assert not calls and (folder / cext.TORCH_LOCK).exists()
        (folder / cext.TORCH_LOCK).unlink()  # the other build finishes
        fcntl.flock(held, fcntl.LOCK_UN)
    t.join(timeout=5)
    assert not t.is_alive() and len(calls) == 1


def test_build_folders_are_per_checkout_and_torch_version(monkeypatch, tmp_path):
    a = cext.build_directory("nbf_test_ext")
    assert a.parent.parent == tmp_path / "ext" and torch.__version__ in a.parent.name
    monkeypatch.setattr(cext, "CSRC", tmp_path / "other_checkout" / "engines" / "csrc")
    b = cext.build_directory("nbf_test_ext")
    assert b.parent == a.parent and b != a and b.name.startswith("nbf_test_ext-")


def test_a_build_killed_mid_way_in_another_process_does_not_block_the_next(monkeypatch):
    """The CI hang: a process killed while it built (holding torch's lock file). Its flock
    goes with it, so the next build takes the folder, removes the stale lock and goes on."""
    calls = []
    monkeypatch.setattr(torch.utils.cpp_extension, "load", _fake_load(0.0, calls))
    folder = cext.build_directory("nbf_test_ext")
    folder.mkdir(parents=True)
    code = (
        "import fcntl, pathlib, sys, time\n"
        "d = pathlib.Path(sys.argv[1])\n"
        "f = open(d / sys.argv[2], 'a')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "(d / sys.argv[3]).touch()\n"
        "print('building', flush=True)\n"
        "time.sleep(60)\n"
    )
    builder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), cext.FLOCK, cext.TORCH_LOCK],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert builder.stdout.readline().strip() == "building"
    finally:
        builder.kill()
        builder.wait(timeout=10)
        builder.stdout.close()
    assert (folder / cext.TORCH_LOCK).exists()
    t = threading.Thread(target=cext.load_extension, args=("nbf_test_ext", ["x.cpp"], False, "h"))
    t.start()
    t.join(timeout=10)
    assert not t.is_alive() and len(calls) == 1
    assert not (folder / cext.TORCH_LOCK).exists()
