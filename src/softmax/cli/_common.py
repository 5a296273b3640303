"""What the commands share: reading data files, checking them against a model,
JSON output and the progress bar.

Imported only from inside ``run()`` functions, so NumPy may be imported at
module level here without slowing ``softmax --help`` down.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from softmax._optional import install_hint
from softmax.cli._args import FORMATS

__all__ = [
    "CLIError",
    "Data",
    "FitProgress",
    "check_against_model",
    "emit_json",
    "image_shape_for",
    "install_hint",
    "load_data",
    "load_model_file",
]

# File formats by suffix; `--format` overrides.
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
    ".svm": "libsvm",
    ".svmlight": "libsvm",
    ".libsvm": "libsvm",
}


class CLIError(Exception):
    """An error in what the user asked for, phrased for the user (one line)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _finite(value: Any) -> Any:
    """Replace NaN/inf by None: standard JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def emit_json(document: dict[str, Any]) -> None:
    """Print ``document`` as standard JSON (NaN/inf become null) on stdout."""
    text = json.dumps(document, default=_json_default, indent=2, ensure_ascii=False)
    # Round-trip once more so NumPy scalars converted by default= are cleaned too.
    print(json.dumps(_finite(json.loads(text)), indent=2, ensure_ascii=False, allow_nan=False))


# --------------------------------------------------------------------------- #
# Data                                                                        #
# --------------------------------------------------------------------------- #


@dataclass
class Data:
    """Rows read from a file or a built-in dataset.

    Attributes
    ----------
    X : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or None
        None when the source has no target (allowed for ``predict``).
    feature_names : list of str or None
        Column names of tabular data and named datasets.
    source : str
        What the rows came from, for messages.
    image_shape : (int, int) or None
        Height and width when the features are the pixels of an image.
    """

    X: Any
    y: np.ndarray | None
    feature_names: list[str] | None
    source: str
    image_shape: tuple[int, int] | None = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def features_for_model(self, model: Any = None) -> Any:
        """X as the estimator should see it.

        For fitting (``model`` None), a frame when the columns have names, so
        the estimator records them in ``feature_names_in_``. For a fitted
        model, a frame with its names when it has them (the columns were
        already matched by name or count) and a plain array otherwise, which
        is what scikit-learn's feature-name checks expect.
        """
        if _is_sparse(self.X):
            return self.X
        names = self.feature_names if model is None else getattr(model, "feature_names_in_", None)
        if names is None:
            return self.X
        import pandas as pd

        return pd.DataFrame(self.X, columns=[str(n) for n in names], copy=False)


def _is_sparse(X: Any) -> bool:
    return hasattr(X, "tocsr")


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"] and len(suffixes) >= 2:
        suffixes = suffixes[:-1]  # data.csv.gz is a CSV (pandas decompresses)
    found = _SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "")
    if found is None:
        raise CLIError(
            f"cannot tell the format of {path.name!r} from its name; use --format "
            f"{{{','.join(FORMATS)}}} (or name it .csv, .parquet, .npz or .svm)"
        )
    return found


def _list(names: Any, limit: int = 12) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _require_pandas(what: str) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise CLIError(f"reading {what} needs pandas: {install_hint('pandas')}") from None
    return pd


#: CSV files at least this large show a progress bar (bytes read) while they load.
LOAD_PROGRESS_BYTES = 32 << 20


class _CountingReader(io.RawIOBase):
    """A binary file that advances a progress bar by the bytes read from it."""

    def __init__(self, raw: Any, bar: Any) -> None:
        self.raw, self.bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        self.bar.update(n or 0)
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def _read_csv(pd: Any, path: Path, sep: str, progress: bool) -> Any:
    """``pd.read_csv``, with a bar of the bytes read for a large uncompressed file.

    The bar's total is the file's size and pandas' parser reads the file
    front to back at a steady pace, so its ETA is honest. Compressed files
    (pandas decompresses ``.gz`` and others by name) are read without one.
    """
    size = path.stat().st_size
    if not (progress and sys.stderr.isatty() and size >= LOAD_PROGRESS_BYTES):
        return pd.read_csv(path, sep=sep)
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, sep=sep)
    from softmax._persist import progress_bar

    bar = progress_bar(True, size, f"reading {path.name}", required=False, unit="B")
    try:
        with io.BufferedReader(_CountingReader(open(path, "rb"), bar), 1 << 20) as f:
            return pd.read_csv(f, sep=sep)
    finally:
        bar.close()


def _read_frame(path: Path, fmt: str, progress: bool = False) -> Any:
    pd = _require_pandas(f"{fmt.upper()} files")
    try:
        if fmt == "csv":
            sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
            return _read_csv(pd, path, sep, progress)
        return pd.read_parquet(path)
    except ImportError:
        raise CLIError(f"reading Parquet needs pyarrow: {install_hint('pyarrow')}") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(f"cannot read {path.name} as {fmt.upper()}: {first}") from None


def _numeric_features(frame: Any, columns: list[str], source: str) -> np.ndarray:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    for column in columns:
        series = frame[column]
        if not (is_numeric_dtype(series) or is_bool_dtype(series)):
            # Name the first offending value so the user can find it.
            values = series.astype(str)
            bad = values[_unparsable(series)]
            where = f" (row {bad.index[0] + 1}: {bad.iloc[0]!r})" if len(bad) else ""
            raise CLIError(
                f"column {column!r} of {source} is not numeric{where}; encode it as "
                "numbers first or leave it out of the data"
            )
    X = frame[columns].to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        rows, cols = np.nonzero(~np.isfinite(X))
        raise CLIError(
            f"{source} has missing or infinite values (first in column "
            f"{columns[cols[0]]!r}, row {rows[0] + 1}); fill or drop them first"
        )
    return X


def _unparsable(series: Any) -> Any:
    """Mask of entries that do not parse as numbers."""
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").isna() & series.notna()


def _target_array(values: Any, source: str, column: str) -> np.ndarray:
    import pandas as pd

    if pd.isna(values).any():
        n = int(pd.isna(values).sum())
        raise CLIError(f"target column {column!r} of {source} has {n} missing values")
    y = np.asarray(values)
    if y.dtype.kind == "f" and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # labels read as 1.0, 2.0 from a float column
    return y


def _load_tabular(
    path: Path,
    fmt: str,
    target: str | None,
    require_target: bool,
    model_features: list[str] | None,
    progress: bool = False,
) -> Data:
    frame = _read_frame(path, fmt, progress)
    source = path.name
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if len(frame) == 0:
        raise CLIError(f"{source} holds no rows (only the header: {_list(columns, 6)})")
    if target is not None and target not in columns:
        raise CLIError(
            f"column {target!r} not found in {source}; its columns are {_list(columns)}"
        )
    if target is None and require_target:
        raise CLIError(
            f"--target COLUMN is required for {fmt.upper()} files (the column holding the "
            f"labels); the columns of {source} are {_list(columns)}"
        )
    if model_features is not None:
        missing = [c for c in model_features if c not in columns]
        if missing:
            raise CLIError(
                f"the model was trained on other features: {source} lacks column(s) "
                f"{_list(missing, 6)}"
            )
        features = list(model_features)
    else:
        features = [c for c in columns if c != target]
    if not features:
        raise CLIError(f"{source} has no feature columns besides the target {target!r}")
    X = _numeric_features(frame, features, source)
    y = _target_array(frame[target], source, target) if target is not None else None
    return Data(X=X, y=y, feature_names=features, source=source)


def _load_npz(path: Path, require_target: bool) -> Data:
    try:
        # allow_pickle=False: an NPZ from elsewhere must not run code on load.
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            if "X" not in keys:
                raise CLIError(f"{path.name} has no array 'X' (it holds {_list(keys)})")
            X = npz["X"]
            y = npz["y"] if "y" in keys else None
            names = npz["feature_names"] if "feature_names" in keys else None
    except CLIError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CLIError(f"cannot read {path.name} as NPZ: {exc}") from None
    if y is None and require_target:
        raise CLIError(f"{path.name} has no array 'y' with the labels (it holds {_list(keys)})")
    if X.ndim != 2:
        raise CLIError(
            f"array X of {path.name} must be 2-D (n_samples, n_features), got {X.shape}"
        )
    if X.dtype.kind not in "biuf":
        raise CLIError(f"array X of {path.name} is not numeric (dtype {X.dtype})")
    if y is not None and y.shape != (X.shape[0],):
        raise CLIError(f"{path.name}: y has shape {y.shape}, X has {X.shape[0]} rows")
    X = X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)
    feature_names = [str(n) for n in names] if names is not None else None
    return Data(X=X, y=y, feature_names=feature_names, source=path.name)


def _load_libsvm(path: Path, require_target: bool, n_features: int | None) -> Data:
    from sklearn.datasets import load_svmlight_file

    try:
        X, y = load_svmlight_file(str(path), n_features=n_features)
    except ValueError as exc:
        raise CLIError(f"cannot read {path.name} as LIBSVM: {exc}") from None
    if np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return Data(X=X.tocsr(), y=y, feature_names=None, source=path.name)


def load_data(
    spec: str,
    *,
    target: str | None = None,
    fmt: str | None = None,
    require_target: bool = True,
    model: Any = None,
    progress: bool = False,
) -> Data:
    """Read DATA as the commands accept it.

    Parameters
    ----------
    spec : str
        A file path, or the name of a built-in dataset when no such file exists.
    target : str, optional
        Label column of a CSV/Parquet file.
    fmt : {"csv", "parquet", "npz", "libsvm"}, optional
        Overrides the format the suffix implies.
    require_target : bool, default=True
        Whether labels are needed (fit, evaluate) or optional (predict).
    model : SoftmaxRegression, optional
        A fitted model the rows are for: tabular columns are selected by its
        feature names, LIBSVM files get its number of features, and the
        result is checked with :func:`check_against_model`.
    progress : bool, default=False
        Show a bar of the bytes read while a large CSV file loads (on a
        terminal; see ``LOAD_PROGRESS_BYTES``).

    Returns
    -------
    data : Data

    Raises
    ------
    CLIError
        For anything wrong with the data, phrased for the user.
    """
    from softmax.datasets import BUILTIN_DATASETS

    path = Path(spec)
    if not path.exists():
        if spec in BUILTIN_DATASETS:
            data = _load_builtin(spec)
        else:
            raise CLIError(
                f"no such file: {spec} (nor a built-in dataset: {', '.join(BUILTIN_DATASETS)})"
            )
    elif path.is_dir():
        raise CLIError(f"{spec} is a directory, not a data file")
    else:
        kind = _format_of(path, fmt)
        model_features = None
        if model is not None and getattr(model, "feature_names_in_", None) is not None:
            model_features = [str(n) for n in model.feature_names_in_]
        if kind in ("csv", "parquet"):
            data = _load_tabular(path, kind, target, require_target, model_features, progress)
        elif kind == "npz":
            data = _load_npz(path, require_target)
        else:
            n_features = int(model.n_features_in_) if model is not None else None
            data = _load_libsvm(path, require_target, n_features)
        if target is not None and kind not in ("csv", "parquet"):
            raise CLIError(f"--target applies to CSV and Parquet files, not {kind.upper()}")
    if data.n_samples == 0:
        raise CLIError(f"{data.source} holds no rows")
    if data.image_shape is None:
        data.image_shape = image_shape_for(data.n_features, data.feature_names)
    if model is not None:
        check_against_model(data, model)
    return data


def _load_builtin(name: str) -> Data:
    from softmax.datasets import load_builtin

    bunch = load_builtin(name)
    images = getattr(bunch, "images", None)
    return Data(
        X=np.asarray(bunch.data, dtype=np.float64),
        y=np.asarray(bunch.target),
        feature_names=[str(n) for n in bunch.feature_names],
        source=name,
        image_shape=tuple(images.shape[1:3]) if images is not None else None,
    )


def image_shape_for(n_features: int, feature_names: list[str] | None) -> tuple[int, int] | None:
    """Height and width when the features look like the pixels of a square image."""
    side = math.isqrt(n_features)
    if side * side != n_features or side < 8:
        return None
    if feature_names is not None and not all(n.startswith("pixel") for n in feature_names):
        return None
    return side, side


def check_against_model(data: Data, model: Any) -> None:
    """Refuse rows that do not have the features the model was trained on."""
    expected = int(model.n_features_in_)
    if data.n_features != expected:
        names = getattr(model, "feature_names_in_", None)
        named = f" ({_list(names, 6)})" if names is not None else ""
        raise CLIError(
            f"the model was trained on other features: it expects {expected}{named}, but "
            f"{data.source} has {data.n_features}"
        )


# --------------------------------------------------------------------------- #
# Models                                                                      #
# --------------------------------------------------------------------------- #


def load_model_file(path: str) -> Any:
    """:func:`softmax.io.load_model` with messages for the command line."""
    from softmax.io import load_model

    if not os.path.exists(path):
        raise CLIError(f"no such model file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a model file")
    try:
        return load_model(path)
    except ValueError as exc:
        raise CLIError(f"cannot load model: {exc}") from None


def check_output_path(path: str, *, suffixes: tuple[str, ...] | None = None) -> Path:
    """An output path whose folder exists (checked before any long computation).

    Parameters
    ----------
    path : str
    suffixes : tuple of str, optional
        The name must end in one of these (lower case, with the dot), so
        that a file's name always says what it holds: a model is never
        written to ``z.csv``.
    """
    out = Path(path)
    if out.is_dir():
        raise CLIError(f"{path} is a directory; give a file name")
    if not out.parent.exists():
        raise CLIError(f"folder {out.parent} does not exist (for {path})")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise CLIError(f"{path}: the output name must end in {' or '.join(suffixes)}")
    return out


# --------------------------------------------------------------------------- #
# Progress                                                                    #
# --------------------------------------------------------------------------- #


class FitProgress:
    """A tqdm progress display fed by ``fit(..., callback=...)``: iterations, objective, gap.

    The display has no total and so no ETA: ``max_iter`` is a limit, not the
    iterations a fit will take (a fit that converges in 40 iterations would
    show a 1000-iteration ETA), and how fast the gap falls depends on the
    solver (linearly for L-BFGS, quadratically near the end for Newton), so
    no extrapolation of it is honest either. It shows instead what is known:
    the iterations done, the objective, and the solver's estimate of the
    relative gap next to ``tol``, the value it must fall below.

    Falls back to nothing when tqdm is missing, output is not a terminal, or
    ``enabled`` is false, so scripts and ``--json`` runs get clean output.

    Parameters
    ----------
    max_iter : int
        The iteration limit (shown, not used as a total).
    tol : float, optional
        The tolerance the gap is compared with (shown beside it).
    enabled : bool
    """

    #: seconds between redraws (tqdm's ``mininterval``)
    refresh_seconds = 0.1

    def __init__(self, max_iter: int, *, tol: float | None = None, enabled: bool = True) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.enabled = enabled and sys.stderr.isatty()
        self.iterations = 0
        self.last_objective: float | None = None
        self.last_gap: float | None = None
        self._bar: Any = None

    def __enter__(self) -> FitProgress:
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return self
            self._bar = tqdm(
                total=None,
                desc=f"fitting (max_iter {self.max_iter})",
                unit="it",
                file=sys.stderr,
                leave=False,
                mininterval=self.refresh_seconds,
            )
        return self

    def postfix(self) -> str:
        """What the display shows beside the count: objective, gap and ``tol``."""
        text = "" if self.last_objective is None else f"objective={self.last_objective:.6g}"
        if self.last_gap is not None:
            # inf: the solver has no estimate yet (e.g. L-BFGS's rate estimate
            # needs two windows of iterations)
            gap = f"{self.last_gap:.1e}" if math.isfinite(self.last_gap) else "?"
            target = f" (tol {self.tol:.0e})" if self.tol is not None else ""
            text += f", gap={gap}{target}"
        return text

    def __call__(self, iteration: int, objective: float, gap: float | None = None) -> None:
        self.iterations = iteration
        self.last_objective = float(objective)
        self.last_gap = None if gap is None else float(gap)
        if self._bar is not None:
            self._bar.update(max(0, iteration - self._bar.n))
            self._bar.set_postfix_str(self.postfix(), refresh=False)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()
