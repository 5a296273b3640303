"""Writing files so that a reader sees the old file or the new one, never a part.

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
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes"]

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
