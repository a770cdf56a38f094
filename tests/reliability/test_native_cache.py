"""Reliability of the compiled kernel's build cache and build (runtime/kernels/cpu/native.py).

* A cached library cut short (a power loss after the rename, before the data reached the disk)
  or corrupted must never reach dlopen (SIGBUS): a fresh interpreter has to notice it, rebuild
  and run the compiled kernel. Entries are published fsynced (file before the rename, directory
  after it).
* An unwritable cache directory means a private build, not a failure; two processes building at
  once both succeed and leave only complete entries.
* A stalling compiler is killed after OPGRAPH_BUILD_TIMEOUT (with whatever it started); other
  threads do not wait for a build in progress: they run the numpy algorithms meanwhile.

Rebuilds use a stand-in compiler (a shell script that copies the library the real compiler
built for this session, and logs each call), so they take milliseconds.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(native.load() is None,
                                reason=f"no compiled kernel: {native.unavailable_reason()}")

_FAKE_CC = """#!/bin/sh
echo "$$" >> "$FAKE_CC_LOG"
if [ -n "$FAKE_CC_SLEEP" ]; then sleep "$FAKE_CC_SLEEP"; fi
out=; prev=
for a in "$@"; do
    if [ "$prev" = "-o" ]; then out="$a"; fi
    prev="$a"
done
exec cp "$FAKE_CC_LIB" "$out"
"""

_STALLING_CC = """#!/bin/sh
sleep 20 &
echo "$!" > "$STALL_PIDFILE"
wait
"""

_CHECK = textwrap.dedent('''
    import numpy as np
    from runtime.kernels.cpu import conv_impl, native
    from tests.reference import conv2d_forward_ref
    nat = native.load()
    assert nat is not None, native.unavailable_reason()
    calls = []
    real = conv_impl._native_forward_run
    conv_impl._native_forward_run = lambda *a: (calls.append(1), real(*a))
    conv_impl.FORCE_ALGORITHM = "native"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, nat.vector_width)).astype(np.float32)
    y = conv_impl.conv2d_forward(x, w, (1, 1), (1, 1), (1, 1), (5, 6))
    assert calls, "the compiled kernel did not run"
    np.testing.assert_allclose(y, conv2d_forward_ref(x, w, (1, 1), (1, 1), (1, 1), (5, 6)),
                               rtol=1e-5, atol=1e-4)
    print("NATIVE OK")
''')


def _script(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(scope="module")
def prebuilt(tmp_path_factory):
    """A copy of the library the real compiler built from the current source (the one this
    process loaded, else compiled here)."""
    dst = tmp_path_factory.mktemp("prebuilt") / "conv_gather.so"
    loaded = getattr(native.load()._lib, "_name", None)
    if loaded and os.path.isfile(loaded):
        shutil.copyfile(loaded, dst)
    else:
        subprocess.run(native.compile_command(native._compiler(), native._FLAGS, dst),
                       check=True, capture_output=True, timeout=300)
    return dst


@pytest.fixture
def fake_cc(tmp_path, prebuilt, monkeypatch):
    """(CC command, log path): the stand-in compiler, set up in this process's environment."""
    cc = _script(tmp_path / "fakecc", _FAKE_CC)
    log = tmp_path / "cc.log"
    monkeypatch.setenv("FAKE_CC_LIB", str(prebuilt))
    monkeypatch.setenv("FAKE_CC_LOG", str(log))
    return str(cc), log


def _compiles(log):
    return len(log.read_text().split()) if log.exists() else 0


@pytest.fixture
def fresh_loader(monkeypatch):
    native._reset()
    monkeypatch.delenv("OPGRAPH_NATIVE", raising=False)
    yield monkeypatch
    native._reset()


def _entries(cache):
    return sorted(p for p in cache.iterdir() if p.name.startswith("conv_gather-")
                  and p.name.endswith(".so"))


def _run_check(cache, cc, extra_env=None):
    env = dict(os.environ, OPGRAPH_CACHE_DIR=str(cache), CC=cc,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("OPGRAPH_NATIVE", None)
    env.update(extra_env or {})
    return subprocess.Popen([sys.executable, "-c", _CHECK], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------------------------
# damaged cache entries
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate-5%", "truncate-50%", "truncate-90%", "corrupt"])
def test_damaged_entry_is_rebuilt_in_a_fresh_process(damage, tmp_path, fake_cc, prebuilt):
    cc, log = fake_cc
    cache = tmp_path / "cache"
    native._build([cc], cache)  # a valid entry, as an earlier process left it
    (entry,) = _entries(cache)
    size = entry.stat().st_size
    if damage == "corrupt":  # same length, different bytes
        data = bytearray(entry.read_bytes())
        data[size // 3:size // 3 + 4096] = bytes(4096)
        entry.write_bytes(bytes(data))
    else:  # power loss after os.replace, before the data reached the disk
        with open(entry, "r+b") as f:
            f.truncate(size * int(damage.split("-")[1][:-1]) // 100)
    before = _compiles(log)
    proc = _run_check(cache, cc)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"rc {proc.returncode} (SIGBUS is -7): {err[-2000:]}"
    assert "NATIVE OK" in out
    assert _compiles(log) == before + 1  # rebuilt once
    (fresh,) = _entries(cache)  # the damaged entry is gone, a complete one replaced it
    assert fresh.stat().st_size == prebuilt.stat().st_size


def test_a_valid_entry_is_loaded_without_compiling(tmp_path, fake_cc, fresh_loader):
    cc, log = fake_cc
    cache = tmp_path / "cache"
    native._build([cc], cache)
    stale = cache / ".conv_gather-old.tmp"  # a killed builder's leftover
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * native.STALE_TMP_SECONDS,) * 2)
    fresh_loader.setenv("OPGRAPH_CACHE_DIR", str(cache))
    fresh_loader.setenv("CC", cc)
    assert native.load() is not None, native.unavailable_reason()
    assert _compiles(log) == 1  # only the first build
    assert stale.exists()  # cleaned only by a builder
    native._reset()
    for entry in _entries(cache):
        entry.unlink()
    assert native.load() is not None
    assert _compiles(log) == 2 and not stale.exists()


def test_entries_are_fsynced_before_and_after_publishing(tmp_path, fake_cc, monkeypatch):
    cc, _ = fake_cc
    cache = tmp_path / "cache"
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        return real_replace(src, dst, **kw)

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    monkeypatch.setattr(native.os, "fsync", fsync)
    monkeypatch.setattr(native.os, "replace", replace)
    native._build([cc], cache)
    monkeypatch.undo()
    replaces = [i for i, e in enumerate(events) if e[0] == "replace"]
    assert len(replaces) == 1, events
    i = replaces[0]
    tmp, final = events[i][1], events[i][2]
    assert [os.path.realpath(p) for p in _entries(cache)] == [final]
    assert ("fsync", tmp) in events[:i], events  # the data is on disk before the rename
    assert ("fsync", os.path.realpath(cache)) in events[i + 1:], events  # and the rename too


# ---------------------------------------------------------------------------------------------
# unwritable cache, concurrent builders
# ---------------------------------------------------------------------------------------------
def test_unwritable_cache_dir_builds_in_a_private_directory(tmp_path, fake_cc, fresh_loader):
    cc, log = fake_cc
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    fresh_loader.setattr(tempfile, "tempdir", str(scratch))
    fresh_loader.setenv("OPGRAPH_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    fresh_loader.setenv("CC", cc)
    nat = native.load()
    assert nat is not None, native.unavailable_reason()
    assert _compiles(log) == 1
    assert not list(scratch.iterdir())  # the private build directory is gone
    rng = np.random.default_rng(1)
    dy = rng.standard_normal((2, 5, 6, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, nat.vector_width, 8)).astype(np.float32)
    conv_impl.FORCE_ALGORITHM = "native"
    try:
        dx = conv_impl.conv2d_backprop_input(dy, w, (2, 5, 6, nat.vector_width), (1, 1),
                                             (1, 1), (1, 1))
    finally:
        conv_impl.FORCE_ALGORITHM = None
    np.testing.assert_allclose(dx, conv2d_backprop_input_ref(
        dy, w, (2, 5, 6, nat.vector_width), (1, 1), (1, 1), (1, 1)), rtol=1e-5, atol=1e-4)


def test_two_processes_building_at_once(tmp_path, fake_cc, prebuilt):
    cc, log = fake_cc
    cache = tmp_path / "cache"
    procs = [_run_check(cache, cc, {"FAKE_CC_SLEEP": "0.5"}) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "NATIVE OK" in out, err[-2000:]
    assert _compiles(log) == 2  # the builds overlapped
    names = [p.name for p in cache.iterdir()]
    assert names and all(n.startswith("conv_gather-") and n.endswith(".so") for n in names)
    assert all(p.stat().st_size == prebuilt.stat().st_size for p in cache.iterdir())


# ---------------------------------------------------------------------------------------------
# a stalling compiler
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def stalling_cc(tmp_path, fresh_loader):
    pidfile = tmp_path / "stall.pid"
    fresh_loader.setenv("CC", str(_script(tmp_path / "stallcc", _STALLING_CC)))
    fresh_loader.setenv("STALL_PIDFILE", str(pidfile))
    fresh_loader.setenv("OPGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    return pidfile


def _gone(pid, wait=3.0):
    """True once process ``pid`` no longer runs (gone, or a zombie nobody reaped yet)."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_stalling_compiler_is_killed_after_the_timeout(stalling_cc, fresh_loader):
    fresh_loader.setenv("OPGRAPH_BUILD_TIMEOUT", "1")
    t0 = time.monotonic()
    assert native.load() is None
    elapsed = time.monotonic() - t0
    assert elapsed < 5, elapsed
    assert "timed out" in native.unavailable_reason()
    assert _gone(int(stalling_cc.read_text())), "the compiler's child still runs"


def test_other_threads_run_numpy_while_a_build_stalls(stalling_cc, fresh_loader):
    fresh_loader.setenv("OPGRAPH_BUILD_TIMEOUT", "2")
    builder = threading.Thread(target=native.load, daemon=True)
    builder.start()
    end = time.monotonic() + 10
    while not stalling_cc.exists() and time.monotonic() < end:
        time.sleep(0.02)
    assert stalling_cc.exists(), "the build did not start"
    rng = np.random.default_rng(2)
    dy = rng.standard_normal((2, 6, 6, 16)).astype(np.float32)
    w = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    result = {}

    def other():
        t0 = time.monotonic()
        result["nat"] = native.load()
        conv_impl.FORCE_ALGORITHM = "native"  # falls back to the numpy gather engine
        try:
            result["dx"] = conv_impl.conv2d_backprop_input(dy, w, dy.shape, (1, 1), (1, 1),
                                                           (1, 1))
        finally:
            conv_impl.FORCE_ALGORITHM = None
        result["seconds"] = time.monotonic() - t0

    t = threading.Thread(target=other, daemon=True)
    t.start()
    t.join(timeout=1.5)
    assert not t.is_alive(), "another thread waited for the build"
    assert result["nat"] is None and result["seconds"] < 1.0
    np.testing.assert_allclose(result["dx"], conv2d_backprop_input_ref(
        dy, w, dy.shape, (1, 1), (1, 1), (1, 1)), rtol=1e-5, atol=1e-4)
    builder.join(timeout=10)
    assert not builder.is_alive()
    assert "timed out" in native.unavailable_reason()
