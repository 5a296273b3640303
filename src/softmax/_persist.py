"""Files that survive a crash, checkpoints made of them, and progress reporting.

Three small services that :mod:`softmax.io`, :mod:`softmax.streaming`, the
stream backend and the stochastic solver share:

- :func:`atomic_write` / :func:`atomic_write_bytes`: a reader sees the old
  file or the new one, never a part;
- :class:`Checkpoint`: a directory of atomically written ``.npz`` records
  that lets an interrupted fit resume (the exact solvers' evaluation log,
  the stochastic solver's state);
- :func:`progress_bar`: a tqdm bar counting rows, or a silent stand-in.

Every file the package writes (model files, ONNX files, figures, checkpoint
records) goes through :func:`atomic_write`: the bytes go to a file in the
target's folder that has no name yet (Linux ``O_TMPFILE``) or a hidden
temporary name, are flushed and fsync'ed, and the file is then renamed over
the target. A crash, an exception or ``SIGINT`` mid-write leaves the target
as it was. With ``O_TMPFILE`` even ``SIGKILL`` leaves nothing behind while the
bytes are written; the only window is the link-and-rename at the end, and a
later write to the same target removes what such a kill left there.

The new file gets the permissions any new file of the process would get
(``0o666`` less the umask), as ``open(path, "w")`` gives, not the ``0o600``
of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "Checkpoint",
    "NoBar",
    "atomic_savez",
    "atomic_write",
    "atomic_write_bytes",
    "progress_bar",
]

_TMP_SUFFIX = ".tmp"


def _umask() -> int:
    # Reading the umask means setting it; /proc avoids the brief change where
    # it is available, which matters when other threads create files.
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale(target: Path) -> None:
    """Remove temporary siblings of ``target`` left by a killed writer.

    Their names carry the writer's process id; a file whose writer is gone is
    garbage (a live writer's file is left alone).
    """
    prefix = _tmp_prefix(target)
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
                continue
            pid_part = name[len(prefix) : -len(_TMP_SUFFIX)].split(".", 1)[0]
            if pid_part.isdigit() and not _pid_alive(int(pid_part)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _tmp_name(target: Path) -> Path:
    unique = f"{os.getpid()}.{secrets.token_hex(4)}"
    return target.parent / f"{_tmp_prefix(target)}{unique}{_TMP_SUFFIX}"


# st_dev -> whether unnamed files made there can be given a name (some file
# systems and sandboxes refuse the link with EXDEV or EOPNOTSUPP).
_LINKABLE: dict[int, bool] = {}


def _open_unnamed(folder: Path, mode: int) -> int | None:
    flag = getattr(os, "O_TMPFILE", None)
    # The finished file is given a name through /proc, so both must exist.
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.open(folder, flag | os.O_WRONLY, mode)
    except OSError:  # file system without O_TMPFILE
        return None
    return fd


def _can_link_unnamed(folder: Path, mode: int) -> bool:
    device = os.stat(folder).st_dev
    if device not in _LINKABLE:
        fd = _open_unnamed(folder, mode)
        ok = False
        if fd is not None:
            probe = _tmp_name(folder / ".probe")
            try:
                os.link(f"/proc/self/fd/{fd}", probe)
                os.unlink(probe)
                ok = True
            except OSError:
                pass
            finally:
                os.close(fd)
        _LINKABLE[device] = ok
    return _LINKABLE[device]


@contextlib.contextmanager
def _unnamed_file(folder: Path, mode: int) -> Iterator[int | None]:
    """A file descriptor of an unnamed file in ``folder``, or None if unsupported."""
    fd = _open_unnamed(folder, mode) if _can_link_unnamed(folder, mode) else None
    try:
        yield fd
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable (POSIX); not possible or needed on Windows.
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(fh)`` so that ``path`` is never partly written.

    Parameters
    ----------
    path : str or path-like
        The target; its folder must exist. An existing file is replaced only
        once the new one is completely on disk.
    write : callable
        Called once with a binary file object open for writing.

    Raises
    ------
    FileNotFoundError
        When the target's folder does not exist.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {str(target)!r}: no folder {str(folder)!r}")
    mode = 0o666 & ~_umask()
    _remove_stale(target)
    tmp = _tmp_name(target)
    with _unnamed_file(folder, mode) as fd:
        try:
            if fd is not None:
                fh = os.fdopen(os.dup(fd), "wb")
            else:
                fh = open(tmp, "xb")  # noqa: SIM115 (closed below, before the rename)
                os.chmod(tmp, mode)
            with fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            if fd is not None:
                # Give the finished file a name, then rename it over the target.
                os.link(f"/proc/self/fd/{fd}", tmp)
            os.replace(tmp, target)
        except BaseException:
            # Also on KeyboardInterrupt: no stray temporary file is left behind.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    _fsync_folder(folder)


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(payload))


def atomic_savez(path: str | os.PathLike[str], arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` as one ``.npz`` file, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()}))


# --------------------------------------------------------------------------- checkpoints


class Checkpoint:
    """A directory of atomically written ``.npz`` files that let a fit resume.

    Two mechanisms share it:

    - *Evaluation log* (exact solvers on a file stream): the n-th
      loss/gradient (or Hessian-vector product) a fit asks the stream for is
      saved as ``evals/<n>.npz`` with a digest of its inputs. A resumed fit
      starts from the same ``coef0`` and, the solvers being deterministic,
      asks the same questions in the same order; they are answered from the
      log without reading the file until the log runs out, and from then on
      the fit continues where it stopped. The model is bit-for-bit the model
      of an uninterrupted fit, whatever the solver keeps in memory.
    - *State* (``solver="sgd"``): coefficients, optimizer state, position
      (epoch, minibatch) and seed, saved at each epoch end and every
      ``checkpoint_interval`` seconds.

    Every file is written by :func:`atomic_write`, so a crash leaves the
    previous record intact. Files are read with ``allow_pickle=False``.
    ``meta.json`` records what the checkpoint was made for; a checkpoint made
    for other data or another fit raises instead of silently mixing the two.

    Parameters
    ----------
    path : str or path-like
        The directory (created if missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "evals").mkdir(exist_ok=True)

    @classmethod
    def open(cls, spec: Checkpoint | str | os.PathLike[str] | None) -> Checkpoint | None:
        """``spec`` itself when it is a :class:`Checkpoint`, one for a path, or None."""
        if spec is None or isinstance(spec, Checkpoint):
            return spec
        return cls(spec)

    def bind(self, meta: dict[str, Any]) -> None:
        """Check (or record) what this checkpoint is for.

        Raises
        ------
        ValueError
            If the directory holds a checkpoint of another source or fit.
        """
        f = self.path / "meta.json"
        meta = json.loads(json.dumps(meta))  # normalise tuples etc. for comparison
        if f.exists():
            old = json.loads(f.read_text())
            if old != meta:
                diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
                raise ValueError(
                    f"checkpoint {self.path} was made for another fit or file (differs in "
                    f"{diff}); delete the directory or choose another checkpoint path"
                )
            return
        atomic_write_bytes(f, json.dumps(meta, indent=1, sort_keys=True).encode())

    def save(self, name: str, **arrays: Any) -> None:
        """Write ``name.npz`` atomically."""
        atomic_savez(self.path / f"{name}.npz", arrays)

    def load(self, name: str) -> dict[str, np.ndarray] | None:
        """Arrays of ``name.npz``, or None if it does not exist."""
        f = self.path / f"{name}.npz"
        if not f.exists():
            return None
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def eval_record(self, index: int) -> dict[str, np.ndarray] | None:
        """The ``index``-th logged evaluation, or None."""
        return self.load(f"evals/{index:08d}")

    def save_eval(self, index: int, **arrays: Any) -> None:
        """Log the ``index``-th evaluation."""
        self.save(f"evals/{index:08d}", **arrays)

    def truncate_evals(self, start: int) -> None:
        """Delete the logged evaluations from ``start`` on (the fit took another path)."""
        folder = self.path / "evals"
        for name in os.listdir(folder):
            if name.endswith(".npz") and name[:-4].isdigit() and int(name[:-4]) >= start:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / name)


# --------------------------------------------------------------------------- progress


class NoBar:
    """The silent stand-in for a progress bar (same methods, no output)."""

    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(
    enabled: bool, total: int | None, desc: str, *, required: bool = True, unit: str = "rows"
) -> Any:
    """A tqdm bar counting rows (rows/s shown by tqdm), or a :class:`NoBar`.

    Parameters
    ----------
    enabled : bool
        False gives a :class:`NoBar`.
    total : int or None
        Rows expected (None: unknown).
    desc : str
        Label of the bar.
    required : bool, default True
        Without tqdm: raise an ImportError naming the extra (True), or fall
        back to a :class:`NoBar` (False: progress is a nicety there).
    unit : str, default "rows"
        What the bar counts; ``"B"`` counts bytes (shown in KiB, MiB, ...).
    """
    if not enabled:
        return NoBar()
    try:
        from tqdm.auto import tqdm
    except ModuleNotFoundError as exc:  # pragma: no cover - tqdm is installed in CI
        if not required:
            return NoBar()
        from softmax._optional import install_hint

        raise ImportError(f"progress bars need tqdm: {install_hint('tqdm')}") from exc
    divisor = 1024 if unit == "B" else 1000
    return tqdm(
        total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=divisor, leave=False
    )
