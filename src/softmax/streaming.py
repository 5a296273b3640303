"""Row sources over files larger than memory: CSV, Parquet, NPY and NPZ.

A :class:`FileSource` reads a file (or several shards of one format) in
blocks of rows, so that :class:`softmax.SoftmaxRegression` can be fitted on
data that does not fit in memory::

    src = FileSource("train.parquet", target="label")
    SoftmaxRegression().fit(src)                  # exact: L-BFGS, one pass per evaluation
    SoftmaxRegression(solver="sgd").fit(src)      # stochastic: epochs of minibatches

How each format is read, and what a *unit* is
---------------------------------------------
A unit is the smallest piece of a file that can be read on its own, so the
stochastic solver can visit units in a random order. A unit yields one or
more blocks of at most ``block_rows`` rows.

======== ======================================== ===============================
format   how blocks are read                      unit (shuffled independently)
======== ======================================== ===============================
CSV      byte ranges of ``block_rows`` lines,     one block
         found by a newline scan, parsed with
         ``pyarrow.csv``
Parquet  ``ParquetFile.iter_batches``             one row group
NPY      positioned reads (``seek`` + ``fromfile``) one block
NPZ      stored members: positioned reads like    one block
         NPY; compressed members: decompressed    the whole member
         front to back (no random access)
======== ======================================== ===============================

NPY and stored NPZ members are read with ``seek`` and ``read`` rather than
``np.load(mmap_mode="r")``: the pages of a memory map count toward the
resident set size of the process as the file is scanned, so a memory-mapped
pass over a 10 GB file would look like a 10 GB process. Positioned reads
leave the caching to the operating system's page cache, outside the process.

The first pass (:meth:`FileSource.scan`) counts the rows, finds the class
set (unless declared), records the CSV block offsets and checks that every
feature is a finite number; later passes trust it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from softmax._persist import Checkpoint, CheckpointWarning, progress_bar

__all__ = ["Block", "Checkpoint", "CheckpointWarning", "FileSource"]

#: Default block size in bytes of float rows, when ``block_rows`` is not given:
#: large enough that per-block overhead (Python, parsing, BLAS start-up) is
#: negligible, small enough to keep the memory of a streaming fit modest.
DEFAULT_BLOCK_BYTES = 16 << 20
_MIN_AUTO_BLOCK_ROWS = 256
_FORMATS = ("csv", "parquet", "npy", "npz")
#: Bytes read at a time by the CSV newline scan.
_SCAN_CHUNK = 8 << 20


def _require_pyarrow(what: str) -> Any:
    try:
        import pyarrow
    except ModuleNotFoundError as exc:  # pragma: no cover - pyarrow is installed in CI
        from softmax._optional import install_hint

        raise ImportError(
            f"reading {what} files needs pyarrow: {install_hint('pyarrow')}"
        ) from exc
    return pyarrow


class Block(NamedTuple):
    """A block of rows read from a source.

    Attributes
    ----------
    start : int
        Index of the block's first row in the whole source (file order).
    X : ndarray of shape (n_rows, n_features)
        Features in the source's dtype (float32 or float64), C-contiguous.
    y : ndarray of shape (n_rows,)
        Raw labels, as stored in the file.
    weight : ndarray of shape (n_rows,) or None
        The weight column, when the source has one.
    """

    start: int
    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None


# --------------------------------------------------------------------------- NPY


@dataclass
class _NpyMember:
    """An array stored in ``.npy`` layout at ``offset`` of a file, read by rows.

    ``offset`` is where the array data begins; ``None`` marks a compressed NPZ
    member, which can only be streamed front to back through ``zipfile``.
    """

    path: str
    offset: int | None
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    zip_name: str | None = None

    @property
    def n_rows(self) -> int:
        return int(self.shape[0])

    @property
    def row_items(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64))

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new array (positioned read, no memory map)."""
        if self.offset is None:
            raise RuntimeError("compressed NPZ members are read sequentially")
        n = stop - start
        if self.fortran_order:
            # Column-major rows are not contiguous: fall back to a memory map
            # (documented caveat: its pages count toward the process RSS).
            mm = np.memmap(
                self.path,
                dtype=self.dtype,
                mode="r",
                offset=self.offset,
                shape=self.shape,
                order="F",
            )
            out = np.array(mm[start:stop], order="C")
            del mm
            return out
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_items * self.dtype.itemsize)
            out = np.fromfile(f, dtype=self.dtype, count=n * self.row_items)
        if out.size != n * self.row_items:
            raise ValueError(f"{self.path} is truncated: expected {n} rows at row {start}")
        return out.reshape((n, *self.shape[1:]))

    def iter_rows(self, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` for consecutive blocks, for any member kind."""
        if self.offset is not None:
            for start in range(0, self.n_rows, block_rows):
                yield start, self.read_rows(start, min(self.n_rows, start + block_rows))
            return
        if self.fortran_order:
            raise ValueError(
                f"member {self.zip_name!r} of {self.path} is a compressed Fortran-order "
                "array, which cannot be read by rows; save it C-ordered or uncompressed"
            )
        with zipfile.ZipFile(self.path) as zf, zf.open(self.zip_name) as f:
            version = np.lib.format.read_magic(f)
            _read_header(f, version)
            item = self.row_items * self.dtype.itemsize
            for start in range(0, self.n_rows, block_rows):
                n = min(block_rows, self.n_rows - start)
                buf = f.read(n * item)
                if len(buf) != n * item:
                    raise ValueError(f"member {self.zip_name!r} of {self.path} is truncated")
                arr = np.frombuffer(buf, dtype=self.dtype).reshape((n, *self.shape[1:]))
                yield start, arr.copy()  # frombuffer is read-only; callers may need to write


def _read_header(f: Any, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _check_numeric_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{where} has dtype {dtype}; FileSource needs numeric features "
            "(bool, integer or float); encode categorical columns as numbers first"
        )


def _open_npy(path: str) -> _NpyMember:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = _read_header(f, version)
        offset = f.tell()
    if dtype.hasobject:
        raise TypeError(f"{path} holds Python objects; FileSource reads numeric arrays only")
    return _NpyMember(path, offset, tuple(shape), np.dtype(dtype), bool(fortran))


def _open_npz_member(path: str, name: str) -> _NpyMember:
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(name)
        except KeyError:
            members = [n.removesuffix(".npy") for n in zf.namelist()]
            raise ValueError(
                f"{path} has no array {name.removesuffix('.npy')!r}; it holds {members}"
            ) from None
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = _read_header(f, version)
            header_len = f.tell()
    if np.dtype(dtype).hasobject:
        raise TypeError(f"array {name!r} of {path} holds Python objects")
    offset = None
    if info.compress_type == zipfile.ZIP_STORED:
        # Stored (np.savez) members are plain .npy bytes inside the zip: find
        # where they start from the local file header (30 bytes, then the
        # name and the extra field, whose lengths it gives).
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        offset = info.header_offset + 30 + name_len + extra_len + header_len
    return _NpyMember(path, offset, tuple(shape), np.dtype(dtype), bool(fortran), info.filename)


# --------------------------------------------------------------------------- readers


@dataclass
class _Unit:
    """An independently readable piece of one file."""

    file: int
    key: Any  # reader-specific: (start, stop) rows, a row group, a byte range
    n_rows: int = -1  # -1 until the scan has counted
    start: int = -1  # first row in the whole source


class _Reader:
    """Reads one file: its units and the blocks of a unit."""

    feature_names: list[str]
    sequential_only: bool = False

    def units(self) -> list[Any]:
        raise NotImplementedError

    def read(self, key: Any, block_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray, Any]]:
        """Blocks ``(X, y, weight)`` of a unit; X in the file's own numeric dtype."""
        raise NotImplementedError


class _ArrowReader(_Reader):
    """A reader whose blocks arrive as Arrow tables (Parquet, CSV)."""

    path: str
    target: Any
    weight: Any

    def _arrays(self, table: Any, where: str = "") -> tuple[np.ndarray, np.ndarray, Any]:
        """``(X, y, weight)`` of an Arrow table or batch laid out as features, target[, weight].

        ``where`` says which part of the file the table holds, for errors.
        """
        p = len(self.feature_names)
        X = np.empty((table.num_rows, p), dtype=np.float64)
        for j in range(p):
            col = table.column(j)
            if col.null_count:
                raise ValueError(
                    f"column {self.feature_names[j]!r} of {self.path}{where} has missing "
                    "values; impute them before training"
                )
            X[:, j] = col.to_numpy(zero_copy_only=False)
        ycol = table.column(p)
        if ycol.null_count:
            raise ValueError(f"target column {self.target!r} of {self.path} has missing labels")
        y = ycol.to_numpy(zero_copy_only=False)
        w = table.column(p + 1).to_numpy(zero_copy_only=False) if self.weight else None
        return X, y, w


class _NpyReader(_Reader):
    """One ``.npy`` file or the members of an ``.npz`` archive."""

    def __init__(self, path, *, target, features, weight, block_rows, npz: bool) -> None:
        self.path = path
        self.block_rows = block_rows
        if npz:
            feat_key = features if isinstance(features, str) else None
            with zipfile.ZipFile(path) as zf:
                names = [n.removesuffix(".npy") for n in zf.namelist()]
            if feat_key is None:
                others = [n for n in names if n not in (target, weight)]
                feat_key = "X" if "X" in names else (others[0] if len(others) == 1 else None)
                if feat_key is None:
                    raise ValueError(
                        f"{path} holds {names}; say which is the feature matrix with "
                        "features='name'"
                    )
            self.X = _open_npz_member(path, feat_key + ".npy")
            features = None if isinstance(features, str) else features
        else:
            self.X = _open_npy(path)
        if len(self.X.shape) != 2:
            raise ValueError(f"the feature array of {path} has shape {self.X.shape}; expected 2-D")
        _check_numeric_dtype(self.X.dtype, f"the feature array of {path}")
        self.sequential_only = self.X.offset is None
        ncol = self.X.shape[1]
        self.y_col: int | None = None
        self.y_arr: _NpyMember | np.ndarray | None = None
        self.w_col: int | None = None
        self.w_arr: _NpyMember | np.ndarray | None = None
        used: list[int] = []
        self.y_col, self.y_arr = self._column_or_array(target, "target", npz, ncol)
        if self.y_col is not None:
            used.append(self.y_col)
        if weight is not None:
            self.w_col, self.w_arr = self._column_or_array(weight, "weight", npz, ncol)
            if self.w_col is not None:
                used.append(self.w_col)
        if features is None:
            cols = [j for j in range(ncol) if j not in used]
        else:
            cols = [int(j) % ncol for j in features]
            if set(cols) & set(used):
                raise ValueError("features must not include the target or weight column")
        self.cols = np.asarray(cols, dtype=np.intp)
        self.all_cols = len(cols) == ncol and np.array_equal(self.cols, np.arange(ncol))
        self.feature_names = [f"x{j}" for j in cols]
        if self.sequential_only and (
            isinstance(self.y_arr, _NpyMember) or isinstance(self.w_arr, _NpyMember)
        ):
            raise ValueError(
                f"{path}: a compressed feature member can only be read together with a "
                "target column; save the archive with np.savez (uncompressed) instead"
            )

    def _column_or_array(self, spec, what, npz, ncol):
        """A column index of the feature array, or a separate labels/weights array."""
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            if not -ncol <= spec < ncol:
                raise ValueError(f"{what} column {spec} is out of range for {ncol} columns")
            return int(spec) % ncol, None
        if npz and isinstance(spec, str):
            member = _open_npz_member(self.path, spec + ".npy")
        elif isinstance(spec, (str, os.PathLike)):
            member = _open_npy(os.fspath(spec))
        else:
            member = np.asarray(spec)
            if member.dtype.hasobject and what == "weight":
                raise TypeError("weights must be numeric")
        ndim = member.ndim if isinstance(member, np.ndarray) else len(member.shape)
        if ndim != 1:
            raise ValueError(f"the {what} array must be 1-D")
        n = member.shape[0]
        if n != self.X.n_rows:
            raise ValueError(
                f"the {what} array has {n} rows but the features have {self.X.n_rows}"
            )
        if isinstance(member, _NpyMember) and member.offset is None:
            # compressed labels are small next to the features: read them once
            with np.load(self.path, allow_pickle=False) as z:
                member = np.asarray(z[spec])
        return None, member

    def units(self) -> list[Any]:
        n = self.X.n_rows
        if self.sequential_only:
            return [(0, n)]
        return [(s, min(n, s + self.block_rows)) for s in range(0, n, self.block_rows)]

    @staticmethod
    def _side(arr, start, stop):
        if arr is None:
            return None
        if isinstance(arr, np.ndarray):
            return arr[start:stop]
        return arr.read_rows(start, stop)

    def _split(self, start: int, rows: np.ndarray):
        X = rows if self.all_cols else rows[:, self.cols]
        stop = start + rows.shape[0]
        y = rows[:, self.y_col] if self.y_col is not None else self._side(self.y_arr, start, stop)
        w = rows[:, self.w_col] if self.w_col is not None else self._side(self.w_arr, start, stop)
        return X, y, w

    def read(self, key, block_rows):
        start, stop = key
        if self.sequential_only:
            for s, rows in self.X.iter_rows(block_rows):
                yield self._split(s, rows)
            return
        for s in range(start, stop, block_rows):
            yield self._split(s, self.X.read_rows(s, min(stop, s + block_rows)))


class _ParquetReader(_ArrowReader):
    def __init__(self, path, *, target, features, weight, block_rows) -> None:
        pa = _require_pyarrow("Parquet")
        import pyarrow.parquet as pq

        self.pa = pa
        self.path = path
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        names = schema.names
        self.target, self.weight, features = _named_columns(names, target, weight, features, path)
        bad = [
            f"{f} ({schema.field(f).type})"
            for f in features
            if not (
                pa.types.is_integer(schema.field(f).type)
                or pa.types.is_floating(schema.field(f).type)
                or pa.types.is_boolean(schema.field(f).type)
            )
        ]
        if bad:
            raise TypeError(
                f"non-numeric feature columns in {path}: {', '.join(bad[:5])}"
                f"{' ...' if len(bad) > 5 else ''}; encode them as numbers or leave them "
                "out with features=[...]"
            )
        self.feature_names = list(features)
        self.columns = [*features, self.target] + ([self.weight] if self.weight else [])
        self.row_groups = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        self._pf = pf  # reopening costs ~1 ms (metadata parse) per unit read

    def units(self) -> list[Any]:
        return [g for g, n in enumerate(self.row_groups) if n > 0]

    def read(self, key, block_rows):
        for batch in self._pf.iter_batches(
            batch_size=block_rows, row_groups=[key], columns=self.columns
        ):
            yield self._arrays(batch)


class _CsvReader(_ArrowReader):
    """CSV read in byte ranges of ``block_rows`` lines (random access by block).

    Limitation (said in the error): quoted fields must not contain newlines,
    since blocks are cut at newline bytes.
    """

    def __init__(self, path, *, target, features, weight, block_rows, delimiter) -> None:
        pa = _require_pyarrow("CSV")
        import pyarrow.csv as pacsv

        self.pa, self.pacsv = pa, pacsv
        self.path = path
        self.block_rows = block_rows
        self.delimiter = delimiter
        with open(path, "rb") as f:
            header = f.readline()
            self.data_start = f.tell()
        if not header.strip():
            raise ValueError(f"{path} is empty or has no header line")
        names = _parse_csv(
            pacsv,
            pa.py_buffer(header if header.endswith(b"\n") else header + b"\n"),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
        ).column_names
        self.names = names
        self.target, self.weight, features = _named_columns(names, target, weight, features, path)
        self.feature_names = list(features)
        self.columns = [*features, self.target] + ([self.weight] if self.weight else [])
        self._units: list[tuple[int, int]] | None = None

    def units(self) -> list[Any]:
        if self._units is None:
            self._units = _csv_block_ranges(self.path, self.data_start, self.block_rows)
        return self._units

    def read(self, key, block_rows):
        pa, pacsv = self.pa, self.pacsv
        a, b = key
        with open(self.path, "rb") as f:
            f.seek(a)
            buf = f.read(b - a)
        types = {c: pa.float64() for c in self.feature_names}
        # Labels are read as text and typed once for the whole file (see
        # FileSource._label_kind): per-block type inference could call the
        # same label an integer in one block and a string in another.
        types[self.target] = pa.string()
        if self.weight:
            types[self.weight] = pa.float64()
        try:
            table = _parse_csv(
                pacsv,
                pa.py_buffer(buf),
                read_options=pacsv.ReadOptions(column_names=self.names),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter),
                convert_options=pacsv.ConvertOptions(
                    column_types=types, include_columns=self.columns
                ),
            )
        except pa.ArrowInvalid as exc:
            raise ValueError(
                f"cannot read rows of {self.path} (bytes {a}-{b}) as numbers: {exc}. "
                "Features must be numeric (encode categories first, or leave the column "
                "out with features=[...]); quoted fields must not contain newlines."
            ) from None
        X, y, w = self._arrays(table, f" (bytes {a}-{b})")
        yield X, np.asarray(y).astype(str), w


def _parse_csv(pacsv: Any, data: Any, **options: Any) -> Any:
    """pyarrow's parse of CSV bytes into a table, leaving Ctrl-C to Python.

    ``pyarrow.csv.read_csv`` swaps in its own ``SIGINT`` handler while it
    parses and passes a signal on through a helper thread; a signal that
    arrives as the parse ends is dropped when that thread is late (a fit
    then ignored Ctrl-C in a few runs in a hundred on a busy machine). The
    streaming reader installs no handler: Python's stays in place and the
    ``KeyboardInterrupt`` comes as soon as the block's parse returns.
    """
    return pacsv.open_csv(data, **options).read_all()


def _csv_block_ranges(path: str, data_start: int, block_rows: int) -> list[tuple[int, int]]:
    """Byte ranges ``[a, b)`` of consecutive runs of ``block_rows`` lines.

    Reads the file in chunks and counts newline bytes with NumPy, so the scan
    costs a fraction of parsing and holds one chunk in memory at a time.
    """
    starts = [data_start]
    count = 0
    pos = data_start
    with open(path, "rb") as f:
        f.seek(data_start)
        while chunk := f.read(_SCAN_CHUNK):
            nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            first = block_rows - count % block_rows - 1  # index in nl of the next block end
            starts.extend((nl[first::block_rows] + pos + 1).tolist())
            count += len(nl)
            pos += len(chunk)
    if starts[-1] >= pos:  # the file ends exactly at a block boundary
        starts.pop()
    ends = [*starts[1:], pos]
    return [(a, b) for a, b in zip(starts, ends) if b > a]


def _column_name(spec: Any, names: list[str], what: str, path: str) -> str:
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if not -len(names) <= spec < len(names):
            raise ValueError(f"{what} column {spec} is out of range: {path} has {len(names)}")
        return names[spec]
    if spec not in names:
        shown = ", ".join(map(repr, names[:10])) + (" ..." if len(names) > 10 else "")
        raise ValueError(f"{path} has no {what} column {spec!r}; its columns are {shown}")
    return str(spec)


def _named_columns(
    names: list[str], target: Any, weight: Any, features: Any, path: str
) -> tuple[str, str | None, list[str]]:
    """Target, weight and feature columns of a file with columns ``names``.

    Columns are given by name or position; the features default to every
    column but the target and the weight.
    """
    target = _column_name(target, names, "target", path)
    weight = None if weight is None else _column_name(weight, names, "weight", path)
    if features is None:
        return target, weight, [n for n in names if n not in (target, weight)]
    return target, weight, [_column_name(f, names, "feature", path) for f in features]


def _format_of(path: str, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in _FORMATS:
            raise ValueError(f"format must be one of {_FORMATS}, got {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("csv", "txt", "tsv"):
        return "csv"
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix in ("npy", "npz"):
        return suffix
    raise ValueError(
        f"cannot tell the format of {path!r} from its suffix; pass format= one of {_FORMATS}"
    )


# --------------------------------------------------------------------------- source


@dataclass
class _Scan:
    n_samples: int
    classes: np.ndarray
    class_counts: np.ndarray | None  # counted on demand (needs the final class set)
    units: list[_Unit]
    label_kind: str  # "int", "float", "str" or "native"
    weight_sum: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    max_abs: float = 0.0  # the largest |feature| (0.0: not measured)


class FileSource:
    """A file (or shards of one format) read in blocks, for out-of-core fits.

    Pass it to :meth:`softmax.SoftmaxRegression.fit` in place of ``X`` (and
    no ``y``): each evaluation of the loss is one pass over the blocks.

    Parameters
    ----------
    path : str, path-like, or sequence of them
        One file or several shards with the same columns. The format comes
        from the suffix (``.csv``/``.tsv``/``.txt``, ``.parquet``/``.pq``,
        ``.npy``, ``.npz``) unless ``format`` says it.
    target : str, int, path-like or array-like
        The labels. CSV/Parquet: a column name (or position). NPY: a column
        index of the array (the features are the other columns), or a
        separate labels ``.npy`` file / 1-D array. NPZ: the name of the
        labels array or a column index of the features; None means ``"y"``
        for an NPZ archive that has it (required otherwise).
    block_rows : int, optional
        Rows per block: the unit of memory. Default: as many rows as fit in
        16 MiB of ``dtype`` features (at least 256).
    classes : array-like, optional
        The class labels. Declare them to skip nothing but the discovery: the
        first pass still counts rows and checks every label is one of them.
    features : sequence of str or int, or str, optional
        Feature columns (names for CSV/Parquet, indices for NPY/NPZ) or, for
        NPZ, the name of the feature array. Default: every other column
        (``"X"`` for NPZ archives that hold one).
    weight : str, int, path-like or array-like, optional
        A column (or array) of sample weights, like ``target``.
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
        The dtype the rows are computed in (float32 halves block memory and
        runs the products at twice the speed).
    format : {"csv", "parquet", "npy", "npz"}, optional
        Overrides the suffix.
    delimiter : str, default ","
        CSV field delimiter (``"\\t"`` is assumed for ``.tsv``).
    checkpoint : str or path-like, optional
        A directory where fits on this source save their progress; a fit
        interrupted and started again with the same source, estimator and
        checkpoint ends with the same model as one never interrupted. See
        :class:`Checkpoint`.
    cache : str or path-like, optional
        A directory for a binary copy of the parsed blocks (features in
        ``dtype``, label codes, weights), written during the first full pass
        of a fit and read back by every later pass and later fits on the
        same file: CSV and Parquet are then decoded once instead of once per
        solver iteration. Needs disk space for ``n_samples * (n_features *
        itemsize + 8)`` bytes; rebuilt when the file or encoding changes.
    progress : bool, default False
        Show a progress bar (rows, rows/s, running loss) for every pass over
        the file (needs ``tqdm``).

    Attributes
    ----------
    n_samples : int
        Rows in the source (after the first pass).
    n_features : int
    classes : ndarray of shape (n_classes,)
        Sorted class labels (after the first pass).
    max_abs : float
        The largest ``|feature|`` (after the first pass).
    class_counts : ndarray of shape (n_classes,)
    feature_names : list of str
    block_rows : int

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from softmax.streaming import FileSource
    >>> d = tempfile.mkdtemp()
    >>> data = np.column_stack([np.random.default_rng(0).normal(size=(1000, 3)),
    ...                         np.arange(1000) % 3])
    >>> np.save(os.path.join(d, "train.npy"), data)
    >>> src = FileSource(os.path.join(d, "train.npy"), target=-1, block_rows=300)
    >>> src.n_samples, src.n_features, src.classes
    (1000, 3, array([0., 1., 2.]))
    >>> [b.X.shape for b in src.iter_blocks()]
    [(300, 3), (300, 3), (300, 3), (100, 3)]
    """

    __softmax_row_source__ = True

    def __init__(
        self,
        path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        target: Any = None,
        block_rows: int | None = None,
        classes: Any = None,
        features: Any = None,
        weight: Any = None,
        dtype: Any = np.float64,
        format: str | None = None,
        delimiter: str | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        cache: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> None:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths:
            raise ValueError("path is an empty sequence; give at least one file")
        self.paths = [os.fspath(p) for p in paths]
        for p in self.paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"no such file: {p!r}")
        fmts = {_format_of(p, format) for p in self.paths}
        if len(fmts) != 1:
            raise ValueError(f"all shards must have one format, got {sorted(fmts)}")
        self.format = fmts.pop()
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if block_rows is not None and (
            isinstance(block_rows, bool)
            or not isinstance(block_rows, (int, np.integer))
            or block_rows < 1
        ):
            raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
        if target is None:
            target = self._default_target()
        self.target = target
        self.features = features
        self.weight = weight
        self.delimiter = delimiter
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.cache = None if cache is None else os.fspath(cache)
        self.progress = bool(progress)
        self._declared_classes = None if classes is None else _unique_labels(classes)
        self._block_rows_arg = block_rows
        # Open the first shard now so that bad arguments fail at construction.
        self._readers: list[_Reader | None] = [None] * len(self.paths)
        first = self._reader(0)
        self.feature_names = list(first.feature_names)
        self.n_features = len(self.feature_names)
        if self.n_features == 0:
            raise ValueError(f"{self.paths[0]} has no feature columns besides the target")
        row_bytes = self.n_features * self.dtype.itemsize
        self.block_rows = int(
            block_rows
            if block_rows is not None
            else max(_MIN_AUTO_BLOCK_ROWS, DEFAULT_BLOCK_BYTES // max(1, row_bytes))
        )
        if block_rows is None:
            self._readers = [None] * len(self.paths)  # reopen with the resolved block size
        self._scan: _Scan | None = None

    def _default_target(self) -> Any:
        """``"y"`` for an NPZ archive that holds one; otherwise the target is required."""
        if self.format == "npz":
            with zipfile.ZipFile(self.paths[0]) as zf:
                if "y.npy" in zf.namelist():
                    return "y"
        raise ValueError(
            "target= is required: the label column (name or position) for CSV/Parquet, "
            "a column index or labels file for NPY, the labels array's name for NPZ"
        )

    # -- readers -------------------------------------------------------------

    def _reader(self, i: int) -> _Reader:
        r = self._readers[i]
        if r is None:
            path = self.paths[i]
            br = self._block_rows_arg or getattr(self, "block_rows", _MIN_AUTO_BLOCK_ROWS)
            kw = {"target": self.target, "features": self.features, "weight": self.weight}
            if self.format == "csv":
                delim = self.delimiter or ("\t" if path.lower().endswith(".tsv") else ",")
                r = _CsvReader(path, block_rows=br, delimiter=delim, **kw)
            elif self.format == "parquet":
                r = _ParquetReader(path, block_rows=br, **kw)
            else:
                r = _NpyReader(path, block_rows=br, npz=self.format == "npz", **kw)
            if i > 0 and r.feature_names != self.feature_names:
                raise ValueError(
                    f"shard {path} has features {r.feature_names[:5]}..., unlike the first "
                    f"shard's {self.feature_names[:5]}...; all shards need the same columns"
                )
            self._readers[i] = r
        return r

    # -- first pass ----------------------------------------------------------

    def scan(self) -> FileSource:
        """Make the first pass if it was not made: rows, classes, checks.

        Returns
        -------
        self : FileSource
        """
        if self._scan is not None:
            return self
        units: list[_Unit] = []
        for i in range(len(self.paths)):
            units.extend(_Unit(i, key) for key in self._reader(i).units())
        uniques: list[np.ndarray] = []
        n = 0
        weight_sum = 0.0 if self.weight is not None else None
        label_kind = "native"
        largest = 0.0
        bar = progress_bar(self.progress, None, "first pass")
        for u in units:
            u.start = n
            rows = 0
            for X, y, w in self._reader(u.file).read(u.key, self.block_rows):
                self._check_block(X, w, n + rows)
                if X.size:
                    largest = max(largest, float(X.max()), -float(X.min()))
                rows += X.shape[0]
                uniques.append(np.unique(y))
                if w is not None:
                    weight_sum += float(np.sum(w, dtype=np.float64))
                bar.update(X.shape[0])
            u.n_rows = rows
            n += rows
        bar.close()
        units = [u for u in units if u.n_rows > 0]
        if n == 0:
            raise ValueError(f"{self.paths} holds no rows")
        if self.format == "csv":
            label_kind = _text_label_kind(uniques)
        found = _unique_labels(np.concatenate([_as_kind(u, label_kind) for u in uniques]))
        if self._declared_classes is not None:
            classes = self._declared_classes
            if label_kind != "native":
                try:
                    classes = np.unique(_as_kind(classes.astype(str), label_kind))
                except ValueError:  # a declared class that is not a number: all are text
                    label_kind = "str"
                    classes = np.unique(classes.astype(str))
                    found = np.unique(np.concatenate([u.astype(str) for u in uniques]))
            unknown = np.setdiff1d(found, classes)
            if unknown.size:
                raise ValueError(
                    f"the file has labels {unknown[:10].tolist()} that are not in classes="
                    f"{classes.tolist()[:20]}; declare every class"
                )
        else:
            classes = found
        self._scan = _Scan(n, classes, None, units, label_kind, weight_sum, max_abs=largest)
        return self

    def _check_block(self, X: np.ndarray, w: np.ndarray | None, start: int) -> None:
        if X.dtype.kind not in "biuf":
            raise TypeError(f"features of {self.paths} have dtype {X.dtype}; they must be numeric")
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            bad = start + int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
            raise ValueError(
                f"row {bad} of {self.paths} has a NaN or infinite feature; clean or impute "
                "the data before training"
            )
        if w is not None:
            w = np.asarray(w, dtype=np.float64)
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("sample weights must be finite and non-negative")

    def _scanned(self) -> _Scan:
        self.scan()
        assert self._scan is not None
        return self._scan

    @property
    def n_samples(self) -> int:
        return self._scanned().n_samples

    @property
    def classes(self) -> np.ndarray:
        return self._scanned().classes

    @property
    def max_abs(self) -> float:
        """The largest absolute value of a feature (after the first pass)."""
        return self._scanned().max_abs

    @property
    def n_units(self) -> int:
        """Number of independently readable units (see the module docstring)."""
        return len(self._scanned().units)

    @property
    def unit_rows(self) -> np.ndarray:
        """Rows in each unit, of shape (n_units,)."""
        return np.array([u.n_rows for u in self._scanned().units], dtype=np.int64)

    @property
    def weight_sum(self) -> float | None:
        """Sum of the weight column (None when the source has none)."""
        return self._scanned().weight_sum

    @property
    def sequential_only(self) -> bool:
        """True when the file cannot be read out of order (compressed NPZ)."""
        return any(self._reader(i).sequential_only for i in range(len(self.paths)))

    @property
    def class_counts(self) -> np.ndarray:
        """Rows of each class, of shape (n_classes,) (one pass over the labels)."""
        s = self._scanned()
        if s.class_counts is None:
            counts = np.zeros(len(s.classes), dtype=np.int64)
            for b in self.iter_blocks():
                counts += np.bincount(self.encode(b.y), minlength=len(s.classes))
            s.class_counts = counts
        return s.class_counts

    # -- reading -------------------------------------------------------------

    def encode(self, y: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Integer codes ``0 .. n_classes - 1`` of raw labels of a block.

        Parameters
        ----------
        y : ndarray of shape (n_rows,)
            Labels as read from the file.
        classes : ndarray of shape (n_classes,), optional
            Sorted classes to encode against (default: the source's).

        Returns
        -------
        codes : ndarray of shape (n_rows,), int64

        Raises
        ------
        ValueError
            For a label that is not a class.
        """
        s = self._scanned()
        classes = s.classes if classes is None else classes
        yk = _as_kind(y, s.label_kind)
        codes = np.searchsorted(classes, yk)
        np.clip(codes, 0, len(classes) - 1, out=codes)
        bad = classes[codes] != yk
        if np.any(bad):
            raise ValueError(
                f"labels {np.unique(yk[bad])[:10].tolist()} are not among the classes "
                f"{classes.tolist()[:20]}"
            )
        return codes.astype(np.int64, copy=False)

    def read_unit(self, index: int) -> Iterator[Block]:
        """The blocks of one unit, in file order.

        Parameters
        ----------
        index : int
            Unit number, ``0 <= index < n_units``.

        Yields
        ------
        Block
        """
        u = self._scanned().units[index]
        start = u.start
        for X, y, w in self._reader(u.file).read(u.key, self.block_rows):
            Xd = np.ascontiguousarray(X, dtype=self.dtype)
            wd = None if w is None else np.asarray(w, dtype=np.float64)
            yield Block(start, Xd, y, wd)
            start += X.shape[0]

    def iter_blocks(self, order: Sequence[int] | None = None) -> Iterator[Block]:
        """All blocks, unit by unit (in file order unless ``order`` is given).

        Parameters
        ----------
        order : sequence of int, optional
            A permutation of ``range(n_units)``.

        Yields
        ------
        Block
        """
        units = range(self.n_units) if order is None else order
        for i in units:
            yield from self.read_unit(int(i))

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this source for a checkpoint (files, sizes, options)."""
        files = []
        for p in self.paths:
            st = os.stat(p)
            files.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
        return {
            "files": files,
            "format": self.format,
            "target": _jsonable(self.target),
            "features": _jsonable(self.features),
            "weight": _jsonable(self.weight),
            "block_rows": self.block_rows,
            "dtype": self.dtype.name,
        }

    def __repr__(self) -> str:
        shown = self.paths[0] + (
            f" (+{len(self.paths) - 1} shards)" if len(self.paths) > 1 else ""
        )
        return (
            f"FileSource({shown!r}, format={self.format!r}, n_features={self.n_features}, "
            f"block_rows={self.block_rows}, dtype={self.dtype.name})"
        )


def _jsonable(x: Any) -> Any:
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if isinstance(x, np.integer):
        return int(x)
    arr = np.asarray(x)
    if arr.dtype.kind in "biufU":
        # arrays (labels given in memory) are identified by a digest, not stored
        if arr.size > 64:
            return "sha256:" + hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        return arr.tolist()
    return repr(x)


def _unique_labels(y: Any) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        arr = arr.ravel()
    if arr.dtype.hasobject:
        try:
            return (
                np.unique(arr.astype(str))
                if all(isinstance(v, str) for v in arr)
                else (np.unique(arr))
            )
        except TypeError:
            raise TypeError("labels mix types that cannot be ordered (e.g. str and int)") from None
    return np.unique(arr)


def _text_label_kind(uniques: list[np.ndarray]) -> str:
    """The narrowest type all CSV labels parse as: "int", "float" or "str"."""
    kind = "int"
    for u in uniques:
        if kind == "int":
            try:
                u.astype(np.int64)
                continue
            except ValueError:
                kind = "float"
        if kind == "float":
            try:
                u.astype(np.float64)
                continue
            except ValueError:
                kind = "str"
        break
    return kind


def _as_kind(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "native":
        return y
    if kind == "int":
        return np.asarray(y).astype(np.int64)
    if kind == "float":
        return np.asarray(y).astype(np.float64)
    return np.asarray(y).astype(str)
