"""Files that survive a crash, checkpoints made of them, and progress reporting.

Three small services that :mod:`softmax.io`, :mod:`softmax.streaming`, the
stream backend and the stochastic solver share:

- :func:`atomic_write` / :func:`atomic_write_bytes`: a reader sees the old
  file or the new one, never a part;
- :class:`Checkpoint`: a directory of atomically written ``.npz`` records
  that lets an interrupted fit resume (the exact solvers' evaluation log,
  the stochastic solver's state), each carrying a SHA-256 digest of its
  values, so that a damaged or altered record is recomputed, never believed;
- :func:`progress_bar`: a tqdm bar counting rows, or a silent stand-in.

Every file the package writes (model files, ONNX files, figures, checkpoint
records) goes through :func:`atomic_write`: the bytes go to a file in the
target's folder that has no name yet (Linux ``O_TMPFILE``) or a hidden
temporary name, are flushed and fsync'ed, and the file is then renamed over
the target. A crash, an exception or ``SIGINT`` mid-write leaves the target
as it was. With ``O_TMPFILE`` even ``SIGKILL`` leaves nothing behind while the
bytes are written; the only window is the link-and-rename at the end, and a
later write to the same target (or opening a :class:`Checkpoint` on its
folder) removes what such a kill left there.

The new file gets the permissions any new file of the process would get
(``0o666`` less the umask), as ``open(path, "w")`` gives, not the ``0o600``
of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "Checkpoint",
    "CheckpointWarning",
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
    _remove_stale_in(target.parent, _tmp_prefix(target))


def _remove_stale_in(folder: Path, prefix: str = ".") -> None:
    """Remove the temporaries in ``folder`` whose names start with ``prefix``
    and whose writer process is gone."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
                continue
            # .<target>.<pid>.<8 hex>.tmp: the pid is the second-to-last field
            parts = name[: -len(_TMP_SUFFIX)].rsplit(".", 2)
            if (
                len(parts) == 3
                and parts[1].isdigit()
                and parts[2] != ""
                and all(c in "0123456789abcdef" for c in parts[2])
                and not _pid_alive(int(parts[1]))
            ):
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
            _remove_stale(folder / ".probe")
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


class CheckpointWarning(UserWarning):
    """A checkpoint record was damaged or altered and is recomputed instead of used."""


_DIGEST = "_sha256"  # the member of every record holding the digest of the others


def _values_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of a record's members: names, dtypes, shapes and bytes, by name."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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
    previous record intact, and opening a checkpoint removes the temporary
    files of writers that were killed. Files are read with
    ``allow_pickle=False``.

    A record is input like any other file and is never believed blindly:
    each carries a SHA-256 digest of its stored values (besides the digest
    of the question it answers), checked when it is read. A record that
    cannot be read (truncated, not a ``.npz``) or whose values do not match
    their digest is deleted with a :class:`CheckpointWarning` naming the
    file, and the fit recomputes it: a damaged checkpoint costs time, never
    a wrong model.

    ``meta.json`` records what the checkpoint was made for; a checkpoint made
    for other data or another fit, or a ``meta.json`` that is not what this
    package writes, raises a ValueError naming the file and the field instead
    of silently mixing the two.

    Parameters
    ----------
    path : str or path-like
        The directory (created if missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "evals").mkdir(exist_ok=True)
        for folder in (self.path, self.path / "evals"):
            _remove_stale_in(folder)

    @classmethod
    def open(cls, spec: Checkpoint | str | os.PathLike[str] | None) -> Checkpoint | None:
        """``spec`` itself when it is a :class:`Checkpoint`, one for a path, or None."""
        if spec is None or isinstance(spec, Checkpoint):
            return spec
        return cls(spec)

    def bind(self, meta: dict[str, Any]) -> None:
        """Check (or record) what this checkpoint is for.

        Parameters
        ----------
        meta : dict
            JSON-able description of the data and the fit.

        Raises
        ------
        ValueError
            If the directory holds a checkpoint of another source or fit, or
            its ``meta.json`` is not valid JSON, is not an object, or lacks a
            field or has one of another type (the message names the file and
            the field).
        """
        f = self.path / "meta.json"
        meta = json.loads(json.dumps(meta))  # normalise tuples etc. for comparison
        if f.exists():
            old = _read_meta(f)
            advice = f"delete {self.path} or choose another checkpoint path"
            missing = sorted(set(meta) - set(old))
            if missing:
                raise ValueError(f"checkpoint file {f} has no field {missing[0]!r}; {advice}")
            for key in sorted(meta):
                new_value, old_value = meta[key], old[key]
                if None not in (new_value, old_value) and type(new_value) is not type(old_value):
                    raise ValueError(
                        f"checkpoint file {f}: field {key!r} is a JSON "
                        f"{_json_type(old_value)}, where this fit records a "
                        f"{_json_type(new_value)} (the file is damaged or was made for "
                        f"another fit); {advice}"
                    )
            if old != meta:
                diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
                raise ValueError(
                    f"checkpoint {self.path} was made for another fit or file ({f} differs "
                    f"in field{'s' if len(diff) > 1 else ''} {diff}); {advice}"
                )
            return
        atomic_write_bytes(f, json.dumps(meta, indent=1, sort_keys=True).encode())

    def save(self, name: str, **arrays: Any) -> None:
        """Write ``name.npz`` atomically, with the SHA-256 digest of its values.

        Parameters
        ----------
        name : str
            Record name, relative to the checkpoint directory, without ``.npz``.
        **arrays : array-like
            The record's members (no object arrays: records are read without
            pickle).
        """
        if _DIGEST in arrays:
            raise ValueError(f"{_DIGEST!r} is reserved for the record's digest")
        values = {k: np.asarray(v) for k, v in arrays.items()}
        values[_DIGEST] = np.str_(_values_digest(values))
        atomic_savez(self.path / f"{name}.npz", values)

    def load(self, name: str) -> dict[str, np.ndarray] | None:
        """Arrays of ``name.npz``; None if it does not exist or cannot be trusted.

        A record that cannot be read, or whose values do not match their
        digest, is deleted with a :class:`CheckpointWarning` naming it, and
        None is returned: the caller recomputes what it held.

        Parameters
        ----------
        name : str
            Record name, as given to :meth:`save`.

        Returns
        -------
        dict of str to ndarray, or None
            The members, without the digest.
        """
        f = self.path / f"{name}.npz"
        if not f.exists():
            return None
        try:
            # our own handle, closed even when np.load fails half-way
            with open(f, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            # Damage shows as many exceptions: truncated (zipfile.BadZipFile,
            # EOFError), not an npz (ValueError), a flipped bit in the zip
            # headers (NotImplementedError for a "compression method",
            # RuntimeError for "encrypted"), a huge declared shape
            # (MemoryError). Whatever it is, the record is recomputed.
            return self._discard(f, f"cannot be read ({type(exc).__name__}: {exc})")
        stored = arrays.pop(_DIGEST, None)
        if stored is None or stored.shape != () or stored.dtype.kind != "U":
            return self._discard(f, "has no digest of its values")
        if str(stored) != _values_digest(arrays):
            return self._discard(f, "holds values that do not match their SHA-256 digest")
        return arrays

    def _discard(self, f: Path, why: str) -> None:
        warnings.warn(
            f"checkpoint record {f} {why}: recomputing it instead",
            CheckpointWarning,
            stacklevel=4,
        )
        with contextlib.suppress(OSError):
            os.unlink(f)

    def eval_record(self, index: int) -> dict[str, np.ndarray] | None:
        """The ``index``-th logged evaluation, or None (missing or not trusted)."""
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


def _json_type(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _read_meta(f: Path) -> dict[str, Any]:
    """The fields of a checkpoint's ``meta.json`` (ValueError naming the file if damaged)."""
    try:
        meta = json.loads(f.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"checkpoint file {f} is not valid JSON ({exc}); delete its folder or choose "
            "another checkpoint path"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(
            f"checkpoint file {f} holds a JSON {_json_type(meta)}, not an object of fields; "
            "delete its folder or choose another checkpoint path"
        )
    return meta


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
