"""Atomic writes: the target is old or new, never partial; no litter; umask honoured.

Checkpoints built on them: killed writers' temporaries removed, records
carrying a SHA-256 digest of their values (checked against hashlib here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

from softmax._persist import Checkpoint, _can_link_unnamed, atomic_write, atomic_write_bytes


def _litter(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "model.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert _litter(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_permissions_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        target = tmp_path / f"f{umask:o}"
        atomic_write_bytes(target, b"x")
        reference = tmp_path / f"ref{umask:o}"
        with open(reference, "wb"):
            pass
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failure_mid_write_keeps_the_old_file_and_leaves_nothing(tmp_path, exc):
    target = tmp_path / "model.bin"
    atomic_write_bytes(target, b"old")

    def write(fh):
        fh.write(b"half")
        raise exc("stop")

    with pytest.raises(exc):
        atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert _litter(tmp_path) == []


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        atomic_write_bytes(tmp_path / "nope" / "f.bin", b"x")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_write_leaves_the_target_whole_and_no_temporary(tmp_path):
    target = tmp_path / "model.bin"
    atomic_write_bytes(target, b"old")
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import time, pathlib
        from softmax._persist import atomic_write
        def write(fh):
            fh.write(b"partial")
            fh.flush()
            pathlib.Path({str(ready)!r}).write_text("1")
            time.sleep(60)
        atomic_write({str(target)!r}, write)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, "the writer died before writing"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert target.read_bytes() == b"old"
    ready.unlink()
    if _can_link_unnamed(tmp_path, 0o600):
        assert _litter(tmp_path) == []  # the bytes lived in an unnamed file
    # Whatever a killed writer left is removed by the next write to the target.
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _litter(tmp_path) == []


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "model.bin"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".model.bin.{dead_pid}.abcd.tmp"
    live = tmp_path / f".model.bin.{os.getpid()}.ef01.tmp"
    other = tmp_path / f".other.bin.{dead_pid}.abcd.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"junk")
    atomic_write_bytes(target, b"x")
    assert not stale.exists()
    assert live.exists() and other.exists()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_checkpoint_record_killed_mid_save_leaves_no_temporary_after_reopening(tmp_path):
    """A writer killed while saving a checkpoint record, on a file system without
    unnamed files (the temporary has a name), leaves a ``*.tmp``; opening the
    checkpoint again removes it, and the last whole record is still read."""
    ck = tmp_path / "ck"
    Checkpoint(ck).save_eval(0, key=np.str_("a"), loss=np.float64(1.5))
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import pathlib, time
        import numpy as np
        import softmax._persist as persist
        persist._open_unnamed = lambda folder, mode: None  # named temporaries only
        real_savez = np.savez
        def slow_savez(fh, **arrays):
            real_savez(fh, **arrays)
            fh.flush()
            pathlib.Path({str(ready)!r}).write_text("1")
            time.sleep(60)
        np.savez = slow_savez
        persist.Checkpoint({str(ck)!r}).save_eval(0, key=np.str_("b"), loss=np.float64(2.5))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, "the writer died before writing"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(_litter(ck / "evals")) == 1  # what the kill left
    reopened = Checkpoint(ck)
    assert _litter(ck / "evals") == []
    record = reopened.eval_record(0)
    assert str(record["key"]) == "a" and float(record["loss"]) == 1.5


def test_opening_a_checkpoint_removes_dead_writers_temporaries_only(tmp_path):
    ck = tmp_path / "ck"
    (ck / "evals").mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    stale = [
        ck / f".meta.json.{dead_pid}.0a1b2c3d.tmp",
        ck / "evals" / f".00000003.npz.{dead_pid}.0a1b2c3d.tmp",
    ]
    kept = [
        ck / "evals" / f".00000004.npz.{os.getpid()}.0a1b2c3d.tmp",  # a live writer's
        ck / "notes.tmp",  # not one of ours
    ]
    for p in stale + kept:
        p.write_bytes(b"junk")
    Checkpoint(ck)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


def test_checkpoint_records_carry_a_digest_of_their_values(tmp_path):
    """The digest is SHA-256 over the stored values (recomputed here with hashlib)."""
    import hashlib

    ck = Checkpoint(tmp_path / "ck")
    grad = np.arange(6.0).reshape(2, 3)
    ck.save("rec", grad=grad, key=np.str_("k"))
    with np.load(tmp_path / "ck" / "rec.npz") as z:
        stored = str(z["_sha256"])
    h = hashlib.sha256()
    for name, a in (("grad", grad), ("key", np.str_("k"))):
        a = np.ascontiguousarray(a)
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    assert stored == h.hexdigest()
    loaded = ck.load("rec")
    assert set(loaded) == {"grad", "key"}
    np.testing.assert_array_equal(loaded["grad"], grad)
    with pytest.raises(ValueError, match="reserved"):
        ck.save("bad", _sha256=np.str_("x"))


def test_every_flipped_bit_of_a_record_is_caught_or_harmless(tmp_path):
    """Flip bit 0 and bit 7 of every byte of a record in turn: each damaged copy
    either reads back the very values saved (the flip hit bytes no value depends
    on, such as a zip timestamp) or is discarded with a warning naming it; none
    raises and none returns other values."""
    from softmax._persist import CheckpointWarning

    ck = Checkpoint(tmp_path / "ck")
    grad = np.arange(30.0).reshape(3, 10)
    ck.save_eval(0, key=np.str_("abc"), loss=np.float64(1.5), grad=grad)
    f = tmp_path / "ck" / "evals" / "00000000.npz"
    original = f.read_bytes()
    discarded = 0
    for pos in range(len(original)):
        for bit in (0, 7):
            damaged = bytearray(original)
            damaged[pos] ^= 1 << bit
            f.write_bytes(bytes(damaged))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                record = ck.eval_record(0)
            if record is None:
                discarded += 1
                assert [w.category for w in caught] == [CheckpointWarning]
                assert str(f) in str(caught[0].message)
                assert not f.exists()
            else:
                assert caught == []
                assert str(record["key"]) == "abc" and float(record["loss"]) == 1.5
                np.testing.assert_array_equal(record["grad"], grad)
    assert discarded > len(original)  # most bytes matter
