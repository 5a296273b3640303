"""Rows on a Dask cluster: chunks persisted on the workers, sums computed there.

The solver runs on the client, exactly as for in-memory data. Each question it
asks (loss and gradient, Hessian-vector product, full Hessian at ``coef``) is
answered by one Dask computation: ``coef`` travels with the graph (written
into each chunk's task when small, else one key that every task shares, so
each worker fetches it once), every row chunk computes its share with the same
:mod:`softmax.linear_loss` code the in-memory backend runs, and the partial
sums are added up in chunk order: on the client when they are small (no
worker-to-worker hops), else in a tree reduction on the workers so that only
one result reaches the client. This is the pattern of dask-glm's L-BFGS: one
``compute`` per function evaluation.

What runs where
---------------
- Client: input checks on metadata, the solver, the reduction's last sum.
- Workers: reading/casting the chunks (once, then held in worker memory by
  ``persist``), the one validation pass (labels, counts, NaN/inf checks), and
  every evaluation over the chunks.

Each persisted chunk is a :class:`softmax.backends.memory.InMemoryData` (the
chunk's rows, label codes and row weights): the workers literally run the
in-memory backend on their chunks, keeping its block buffers between
evaluations.

Fault tolerance: the chunks are persisted from a task graph (never only from
scattered data), so when a worker dies Dask recomputes the chunks it held
from their sources and the fit carries on with the same numbers.

Hessian-vector products: Newton-CG asks for many ``H v`` at the same
``coef``. :meth:`DaskRowData.gradient_hessian_product` therefore persists a
per-chunk state on the workers (the chunk's class probabilities, ``n_rows x
n_classes`` in the chunk's dtype) and each ``hessp(v)`` is one pass that only
multiplies, instead of recomputing the probabilities every time. The state of
the previous Newton step is released when a new one is made.
"""

from __future__ import annotations

import copy
import numbers
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softmax.backends._base import BLOCK_SUMS, RowData, check_batch_size
from softmax.backends.memory import InMemoryData
from softmax.linear_loss import column_moments
from softmax.losses import check_label_smoothing

__all__ = ["DaskRowData", "build_row_data", "predict_dask"]


#: Partial sums combined per task of the tree reduction. Eight keeps the tree
#: shallow (three levels cover 512 chunks) while each combining task stays
#: cheap (eight gradient-sized arrays).
SPLIT_EVERY = 8

PREDICT_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


def _import_dask() -> tuple[Any, Any]:
    """``(dask, dask.array)``, or an ImportError that names the extra."""
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is installed in the test env
        from softmax._optional import install_hint

        raise ImportError(
            "Dask input needs the optional dependencies dask and distributed: "
            + install_hint("dask", "distributed")
        ) from exc
    return dask, da


def _frame_kind(obj: Any) -> str | None:
    """ "frame" for a Dask DataFrame, "series" for a Dask Series, else None.

    dask.dataframe is not imported for this: a Dask frame can only exist once
    its module has been imported.
    """
    dd = sys.modules.get("dask.dataframe")
    if dd is None:
        return None
    if isinstance(obj, dd.DataFrame):
        return "frame"
    if isinstance(obj, dd.Series):
        return "series"
    return None


def _is_dask_frame(obj: Any) -> bool:
    return _frame_kind(obj) is not None


def _is_dask_array(obj: Any) -> bool:
    return hasattr(obj, "chunks") and hasattr(obj, "to_delayed") and hasattr(obj, "ndim")


# ---------------------------------------------------------------------------
# Functions that run on the workers. Module level, so that tasks pickle by
# reference: a worker needs softmax installed (as it needs numpy).
# ---------------------------------------------------------------------------


def _prepare_x(parts: list[Any], dtype: np.dtype) -> Any:
    """One row chunk of X from its column blocks: C-contiguous ``dtype`` or CSR."""
    import scipy.sparse as sp

    parts = [p.to_numpy() if hasattr(p, "to_numpy") else p for p in parts]
    if any(sp.issparse(p) for p in parts):
        x = sp.hstack(parts, format="csr") if len(parts) > 1 else sp.csr_matrix(parts[0])
        return x.astype(dtype, copy=False)
    x = parts[0] if len(parts) == 1 else np.hstack(parts)
    # ascontiguousarray copies only when needed: a float chunk already in the
    # right dtype and layout is kept as is (no second copy in worker memory).
    return np.ascontiguousarray(x, dtype=dtype)


def _prepare_vector(part: Any, dtype: Any) -> np.ndarray:
    """A chunk of y (``dtype`` None: kept) or sample_weight (float64) as a 1-D ndarray."""
    v = part.to_numpy() if hasattr(part, "to_numpy") else np.asarray(part)
    return np.asarray(v, dtype=dtype).reshape(-1)


def _x_summary(x: Any) -> tuple[int, int, bool, bool, bool]:
    """``(n_rows, n_features, has_nan, has_inf, is_sparse)`` of a prepared X chunk."""
    sparse = hasattr(x, "tocsr")
    values = x.data if sparse else x
    has_nan = bool(np.isnan(values).any())
    has_inf = bool(np.isinf(values).any())
    return x.shape[0], x.shape[1], has_nan, has_inf, sparse


def _slice_concat(pieces: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    """Concatenation of ``part[start:stop]`` for each piece: realigns vector chunks."""
    arrays = [part[start:stop] for part, start, stop in pieces]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


@dataclass
class _LabelSummary:
    """What the validation pass learns about the labels and weights of the rows."""

    labels: np.ndarray  # distinct labels, sorted
    counts: np.ndarray  # rows per label
    weighted: np.ndarray  # summed sample weight per label
    n_rows: int
    w_nonfinite: bool
    w_min: float

    @staticmethod
    def of(y: np.ndarray, w: np.ndarray | None) -> _LabelSummary:
        labels, inverse = np.unique(y, return_inverse=True)
        inverse = inverse.reshape(-1)
        counts = np.bincount(inverse, minlength=len(labels)).astype(np.int64)
        if w is None:
            weighted = counts.astype(np.float64)
            nonfinite, w_min = False, np.inf
        else:
            nonfinite = not bool(np.isfinite(w).all())
            w_min = float(w.min()) if len(w) else np.inf
            weighted = np.bincount(
                inverse, weights=np.where(np.isfinite(w), w, 0.0), minlength=len(labels)
            )
        return _LabelSummary(labels, counts, weighted, len(y), nonfinite, w_min)

    @staticmethod
    def merge(*parts: _LabelSummary) -> _LabelSummary:
        labels, inverse = np.unique(np.concatenate([p.labels for p in parts]), return_inverse=True)
        inverse = inverse.reshape(-1)
        counts = np.bincount(
            inverse, weights=np.concatenate([p.counts for p in parts]), minlength=len(labels)
        ).astype(np.int64)
        weighted = np.bincount(
            inverse, weights=np.concatenate([p.weighted for p in parts]), minlength=len(labels)
        )
        return _LabelSummary(
            labels,
            counts,
            weighted,
            sum(p.n_rows for p in parts),
            any(p.w_nonfinite for p in parts),
            min(p.w_min for p in parts),
        )


def _summarize(y: np.ndarray, w: np.ndarray | None) -> _LabelSummary:
    return _LabelSummary.of(y, w)


def _merge_summaries(*parts: _LabelSummary) -> _LabelSummary:
    return _LabelSummary.merge(*parts)


class _Chunk(InMemoryData):
    """In-memory rows of one chunk, sized truthfully for Dask's memory manager."""

    # a worker already runs one task per thread: no row threads on top
    row_threads = 1
    # a persisted chunk holds its rows once: no second copy of its columns
    # (__sizeof__ reports the rows to the workers' memory limits)
    compact_columns = False

    def __reduce__(self) -> tuple:
        # pickles (worker-to-worker moves, minibatches to the client) carry
        # the rows, not the block buffers
        return (
            _Chunk._rebuild,
            (self.X, self.y, self.weights, self.classes, self.fit_intercept, self.label_smoothing),
        )

    @staticmethod
    def _rebuild(
        X: Any,
        y: np.ndarray,
        w: np.ndarray | None,
        classes: np.ndarray,
        fit_intercept: bool,
        label_smoothing: float = 0.0,
    ) -> _Chunk:
        return _Chunk(
            X, y, w, classes, fit_intercept=fit_intercept, label_smoothing=label_smoothing
        )

    def __sizeof__(self) -> int:
        # dask.sizeof falls back to sys.getsizeof, which would report a few
        # hundred bytes for gigabytes of rows and mislead the workers' memory
        # limits and the scheduler's placement
        X = self.X
        parts = [X.data, X.indices, X.indptr] if hasattr(X, "tocsr") else [X]
        parts += [self.y] + ([] if self.weights is None else [self.weights])
        ws = self._ws
        if ws is not None and ws.proba is not None:
            parts.append(ws.proba)
        return 256 + sum(int(arr.nbytes) for arr in parts)


def _make_chunk(
    x: Any,
    y: np.ndarray,
    w: np.ndarray | None,
    classes: np.ndarray,
    class_weights: np.ndarray | None,
    fit_intercept: bool,
    label_smoothing: float = 0.0,
) -> Any:
    """The persisted form of a chunk: the in-memory backend on its rows."""
    # Labels were checked against `classes` in the validation pass.
    codes = np.searchsorted(classes, y).astype(np.intp, copy=False)
    if class_weights is not None:
        cw = class_weights[codes]
        w = cw if w is None else w * cw
    elif w is not None:
        w = np.asarray(w, dtype=np.float64)
    return _Chunk(
        x, codes, w, classes, fit_intercept=fit_intercept, label_smoothing=label_smoothing
    )


def _chunk_loss_gradient(coef: np.ndarray, chunk: Any, need_gradient: bool) -> tuple:
    if need_gradient:
        return chunk.loss_gradient(coef)
    return chunk.loss(coef), None


def _chunk_hessian(coef: np.ndarray, chunk: Any) -> tuple:
    return chunk.hessian(coef)


def _chunk_information(coef: np.ndarray, chunk: Any, reference: int, meat: Any) -> Any:
    return chunk.information(coef, reference, meat=meat)


def _add_information(*parts: Any) -> Any:
    """The sum of :class:`~softmax.linear_loss.InformationSums` (inputs left unchanged)."""
    import copy

    total = copy.deepcopy(parts[0])  # a task's inputs must not be modified
    for part in parts[1:]:
        total.add(part)
    return total


def _chunk_hessp_state(coef: np.ndarray, chunk: Any) -> tuple:
    """``(loss, grad, hessp)`` of a chunk; kept on its worker for the products."""
    return chunk.gradient_hessian_product(coef)


def _chunk_feature_sums(chunk: Any) -> tuple:
    """Weighted column sums and sums of squares of a chunk's rows."""
    return column_moments(chunk.X, chunk.weights)


def _chunk_curvature_moments(coef: np.ndarray, chunk: Any) -> tuple:
    return chunk.curvature_moments(coef)


def _state_loss_gradient(state: tuple) -> tuple:
    return state[0], state[1]


def _state_hessp(state: tuple, v: np.ndarray) -> np.ndarray:
    return state[2](v)


def _stateless_hessp(coef: np.ndarray, chunk: Any, v: np.ndarray) -> np.ndarray:
    """``H v`` from scratch (probabilities recomputed): for an outdated ``hessp``."""
    from softmax.linear_loss import block_hessp

    _, _, hessp = block_hessp(
        coef, chunk.X, chunk.y, chunk.weights, fit_intercept=chunk.fit_intercept
    )
    return hessp(v)


def _add_tuples(*parts: tuple) -> tuple:
    """Elementwise sum of ``(loss, grad[, hessian])`` tuples (None stays None)."""
    out = []
    for items in zip(*parts):
        if items[0] is None:
            out.append(None)
        elif isinstance(items[0], np.ndarray):
            acc = items[0].copy()
            for item in items[1:]:
                acc += item
            out.append(acc)
        else:
            out.append(sum(items, 0.0))
    return tuple(out)


def _add_arrays(*parts: np.ndarray) -> np.ndarray:
    acc = parts[0].copy()
    for item in parts[1:]:
        acc += item
    return acc


def _predict_block(block: Any, estimator: Any, method: str) -> np.ndarray:
    """The fitted estimator's own in-memory ``method`` on one chunk of rows."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and not hasattr(block, "columns"):
        import pandas as pd

        # fitted on a frame: give the chunk its column names back, so that
        # in-memory validation sees the same input it was fitted on
        block = pd.DataFrame(block, columns=names)
    return np.asarray(getattr(estimator, method)(block))


# ---------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------


def _task(func: Callable, *args: Any, name: str) -> Any:
    """A delayed call with a given key (no tokenizing of array arguments)."""
    import dask

    return dask.delayed(func, pure=True)(*args, dask_key_name=name)


def _tree_sum(leaves: list[Any], combine: Callable, prefix: str) -> Any:
    """Sum ``leaves`` (delayed) with a tree of ``combine`` tasks of fan-in SPLIT_EVERY."""
    level = 0
    while len(leaves) > 1:
        leaves = [
            _task(combine, *leaves[i : i + SPLIT_EVERY], name=f"{prefix}-sum{level}-{i}")
            for i in range(0, len(leaves), SPLIT_EVERY)
        ]
        level += 1
    return leaves[0]


def _literal(value: Any, name: str) -> Any:
    """``value`` as one key of the graph: shipped once, shared by every task."""
    import dask

    return dask.delayed(value, name=name, traverse=False)


#: Up to this many bytes of per-chunk results in all, every chunk's result is
#: sent to the client and summed there; beyond it they are summed in a tree on
#: the workers. Measured on a LocalCluster of two workers (16 chunks): the
#: tree's worker-to-worker hops cost about as much as the chunks' arithmetic.
GATHER_BYTES = 4 * 2**20

#: Below this size, ``coef`` (or a direction ``v``) is written into every
#: chunk's task instead of being one key of the graph that the tasks fetch:
#: a shared key costs a task and a worker-to-worker fetch before the chunks
#: can start (about one scheduler round trip per evaluation), while a few
#: kilobytes copied into each task cost nothing measurable.
INLINE_BYTES = 64 * 1024


def _broadcast(value: np.ndarray, name: str) -> Any:
    """``value`` for every chunk's task: inlined when small, else one shared key."""
    return value if value.nbytes <= INLINE_BYTES else _literal(value, name)


class _HesspState:
    """Per-chunk Hessian states of one Newton step, persisted on the workers."""

    def __init__(self, coef: np.ndarray, states: list[Any] | None) -> None:
        self.coef = coef
        self.states = states


class DaskRowData(RowData):
    """Rows persisted in Dask worker memory, answering the :class:`RowData` sums.

    Made by :func:`build_row_data`; not meant to be constructed directly.

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        Sorted labels; code ``k`` stands for ``classes[k]``.
    n_samples, n_features : int
    fit_intercept : bool
    dtype : numpy.dtype
        float32 or float64, the dtype of the persisted chunks.
    weight_sum : float
        Sum of the row weights ``s_i`` (sample weight times class weight).
    n_passes : int
        Distributed passes over the rows made by the solver so far.
    n_chunks : int
        Number of persisted row chunks.
    class_counts : ndarray of shape (n_classes,)
        Rows per class, from the validation pass.
    feature_names : ndarray of shape (n_features,) or None
        Column names when X was a Dask DataFrame with string column names.
    is_sparse : bool
        Whether the chunks are CSR matrices (solver "auto" then avoids
        newton-cholesky, as it does in memory).
    label_smoothing : float in [0, 1)
        Smoothed targets in the data term (every chunk carries it).
    """

    def __init__(
        self,
        chunks: list[Any],
        *,
        classes: np.ndarray,
        n_samples: int,
        n_features: int,
        fit_intercept: bool,
        dtype: np.dtype,
        weight_sum: float,
        class_counts: np.ndarray,
        feature_names: np.ndarray | None = None,
        is_sparse: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        self._chunks = chunks
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.classes = classes
        self.n_samples = n_samples
        self.n_features = n_features
        self.fit_intercept = bool(fit_intercept)
        self.dtype = np.dtype(dtype)
        self.weight_sum = float(weight_sum)
        self.class_counts = class_counts
        self.feature_names = feature_names
        self.is_sparse = bool(is_sparse)
        self.capabilities = BLOCK_SUMS
        self.n_passes = 0
        self._hessp: _HesspState | None = None
        self._moments: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    def _coef(self, coef: np.ndarray) -> np.ndarray:
        coef = np.array(coef, dtype=np.float64, order="C")  # a copy the solver cannot mutate
        if coef.shape != self.coef_shape:
            raise ValueError(f"coef has shape {coef.shape}; expected {self.coef_shape}")
        return coef

    def _compute(self, root: Any) -> Any:
        import dask

        (result,) = dask.compute(root)
        return result

    def _reduce(self, leaves: list[Any], combine: Callable, prefix: str, nbytes: int) -> Any:
        """Compute the chunks' results (``nbytes`` each at most) and sum them.

        Small results go straight to the client and are summed there in chunk
        order: no worker waits for another's partial sum (each such hop is a
        scheduler round trip). Large ones (full Hessians, big models) meet in
        a tree on the workers so that the client receives one. Both orders
        are fixed by the chunk index, not by where chunks live, so a fit
        gives the same numbers whichever worker computed what.
        """
        if len(leaves) * nbytes <= GATHER_BYTES:
            import dask

            return combine(*dask.compute(*leaves))
        return self._compute(_tree_sum(leaves, combine, prefix))

    def _evaluate(
        self,
        func: Callable,
        coef: np.ndarray,
        *extra: Any,
        combine: Callable,
        result_nbytes: int | None = None,
    ) -> Any:
        """One distributed pass: ``func(coef, chunk, *extra)`` summed over the chunks."""
        coef = self._coef(coef)
        if result_nbytes is None:
            result_nbytes = coef.nbytes
        token = uuid.uuid4().hex
        coef_d = _broadcast(coef, f"softmax-coef-{token}")
        leaves = [
            _task(func, coef_d, chunk, *extra, name=f"softmax-{func.__name__}-{token}-{i}")
            for i, chunk in enumerate(self._chunks)
        ]
        self.n_passes += 1
        return self._reduce(leaves, combine, f"softmax-{token}", result_nbytes)

    def loss_gradient(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        """Summed weighted cross-entropy and its gradient, in one distributed pass."""
        loss, grad = self._evaluate(_chunk_loss_gradient, coef, True, combine=_add_tuples)
        return float(loss), grad

    def loss(self, coef: np.ndarray) -> float:
        """Summed weighted cross-entropy alone (one matrix product per chunk)."""
        return float(self._evaluate(_chunk_loss_gradient, coef, False, combine=_add_tuples)[0])

    def feature_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean of each feature and of its square (one pass, cached).

        :attr:`Capability.FEATURE_MOMENTS`: with it, and with
        :meth:`curvature_moments`, the batch solvers precondition a fit on the
        cluster exactly as they do in memory, so it takes the same iterations.

        Returns
        -------
        mean, sq_mean : ndarray of shape (n_features,), float64
        """
        if self._moments is None:
            token = uuid.uuid4().hex
            leaves = [
                _task(_chunk_feature_sums, chunk, name=f"softmax-fm-{token}-{i}")
                for i, chunk in enumerate(self._chunks)
            ]
            s1, s2 = self._reduce(leaves, _add_tuples, f"softmax-fm-{token}", 16 * self.n_features)
            total = max(self.weight_sum, 1e-300)
            self._moments = (s1 / total, s2 / total)
        return self._moments

    def curvature_moments(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Curvature-weighted row moments at ``coef``, summed over chunks (one pass).

        See :func:`softmax.linear_loss.block_curvature_moments`.
        """
        return self._evaluate(_chunk_curvature_moments, coef, combine=_add_tuples)

    def hessian(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss, gradient and the full Hessian: a sum of per-chunk Hessians.

        Each chunk ships an ``(n_coef, n_coef)`` float64 matrix through the
        reduction, so this is meant for small ``n_coef`` (newton-cholesky).
        """
        n_coef = self.coef_shape[0] * self.coef_shape[1]
        loss, grad, hess = self._evaluate(
            _chunk_hessian, coef, combine=_add_tuples, result_nbytes=8 * n_coef * (n_coef + 1)
        )
        return float(loss), grad, hess

    def gradient_hessian_product(
        self, coef: np.ndarray
    ) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Loss, gradient and ``v -> H v`` at ``coef``.

        The chunks' probabilities at ``coef`` are persisted on the workers, so
        each ``hessp(v)`` is one pass of two matrix products per chunk. Only the
        latest Newton step's state is kept: an older ``hessp`` still works but
        recomputes the probabilities on every call.
        """
        import dask

        coef = self._coef(coef)
        if self._hessp is not None:
            self._hessp.states = None  # release the previous step's state first
        token = uuid.uuid4().hex
        coef_d = _broadcast(coef, f"softmax-coef-{token}")
        states = [
            _task(_chunk_hessp_state, coef_d, chunk, name=f"softmax-hstate-{token}-{i}")
            for i, chunk in enumerate(self._chunks)
        ]
        states = list(dask.persist(*states))
        holder = _HesspState(coef, states)
        self._hessp = holder
        self.n_passes += 1
        leaves = [
            _task(_state_loss_gradient, s, name=f"softmax-hlg-{token}-{i}")
            for i, s in enumerate(states)
        ]
        loss, grad = self._reduce(leaves, _add_tuples, f"softmax-hlg-{token}", coef.nbytes)

        def hessp(v: np.ndarray) -> np.ndarray:
            v = np.array(v, dtype=np.float64).reshape(self.coef_shape)
            token_v = uuid.uuid4().hex
            v_d = _broadcast(v, f"softmax-v-{token_v}")
            self.n_passes += 1
            if holder.states is not None:
                leaves = [
                    _task(_state_hessp, s, v_d, name=f"softmax-hv-{token_v}-{i}")
                    for i, s in enumerate(holder.states)
                ]
            else:
                c_d = _broadcast(holder.coef, f"softmax-coef-{token_v}")
                leaves = [
                    _task(_stateless_hessp, c_d, chunk, v_d, name=f"softmax-hv-{token_v}-{i}")
                    for i, chunk in enumerate(self._chunks)
                ]
            return self._reduce(leaves, _add_arrays, f"softmax-hv-{token_v}", v.nbytes)

        return float(loss), grad, hessp

    def information(
        self,
        coef: np.ndarray,
        reference: int,
        *,
        meat: str | None = None,
        groups: np.ndarray | None = None,
    ) -> Any:
        """Log-likelihood, score, information (and HC0 meat): per-chunk sums, summed.

        :attr:`Capability.INFORMATION` (see
        :func:`softmax.linear_loss.block_information`). Each chunk ships one
        or two ``(m, m)`` float64 matrices (``m = (n_classes - 1) * (n_features
        + fit_intercept)``) through the reduction. The cluster meat needs the
        rows in group order: not on a cluster of chunks.
        """
        self._check_unsmoothed("the information")
        if meat == "cluster" or groups is not None:
            raise ValueError(
                "the cluster-robust covariance visits the rows cluster by cluster: it needs "
                "the rows in memory, not a Dask collection"
            )
        K, q = self.coef_shape
        m = (K - 1) * q
        passes = self.n_passes
        total = self._evaluate(
            _chunk_information,
            coef,
            int(reference),
            meat,
            combine=_add_information,
            result_nbytes=8 * m * m * (2 if meat else 1),
        )
        self.n_passes = passes  # not a solver's pass
        return total

    def iter_minibatches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """One epoch of minibatches for the stochastic solver.

        Rows cannot be shuffled across the cluster cheaply, so (as for file
        streams) the chunks are visited in a random order and the rows are
        shuffled within each chunk; each chunk is fetched to the client once
        per epoch.
        """
        check_batch_size(batch_size)
        self.n_passes += 1
        for index in rng.permutation(self.n_chunks):
            chunk = self._compute(self._chunks[index])
            yield from chunk.iter_minibatches(batch_size, rng)

    def release(self) -> None:
        """Drop the persisted chunks (their worker memory is freed)."""
        self._chunks = []
        self._hessp = None


# ---------------------------------------------------------------------------
# Building the row data
# ---------------------------------------------------------------------------


def _fit_dtype(dtype: Any, source: np.dtype | None) -> np.dtype:
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64 (or None); got {dt}.")
        return dt
    # float32 stays float32 (twice the speed, half the memory); anything else
    # (ints, bools, float16) is computed in float64, as in memory
    return np.dtype(np.float32) if source == np.float32 else np.dtype(np.float64)


def _frame_to_array(X: Any, dtype: Any) -> tuple[Any, np.dtype, np.ndarray | None]:
    """A Dask DataFrame as a float Dask array (lazy, unknown row chunks)."""
    import pandas as pd

    bad = [c for c, t in X.dtypes.items() if not (pd.api.types.is_numeric_dtype(t))]
    if bad:
        raise TypeError(
            f"X has non-numeric columns {bad[:5]}; encode them as numbers first "
            "(e.g. one-hot encoding with dask_ml.preprocessing)."
        )
    kinds = {np.dtype(t).name if not hasattr(t, "numpy_dtype") else "ext" for t in X.dtypes}
    dt = _fit_dtype(dtype, np.dtype(np.float32) if kinds == {"float32"} else None)
    columns = list(X.columns)
    names = np.asarray(columns, dtype=object) if all(isinstance(c, str) for c in columns) else None
    return X.astype(dt).to_dask_array(), dt, names


def _as_dask_x(X: Any, dtype: Any) -> tuple[Any, np.dtype, np.ndarray | None]:
    if _is_dask_frame(X):
        if _frame_kind(X) == "series":
            raise ValueError(
                "X is a Dask Series (one column); pass a 2-D DataFrame, e.g. s.to_frame()."
            )
        return _frame_to_array(X, dtype)
    if not _is_dask_array(X):
        raise TypeError(f"X must be a Dask array or DataFrame; got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2-D Dask array (n_samples, n_features); got {X.ndim} dimension(s). "
            "Reshape it, e.g. X.reshape(-1, 1) for a single feature."
        )
    kind = np.dtype(X.dtype).kind
    if kind not in "biuf":
        raise TypeError(
            f"X has dtype {X.dtype}; it must hold numbers (bool, int or float). "
            "Encode strings or categories as numbers first."
        )
    return X, _fit_dtype(dtype, np.dtype(X.dtype)), None


@dataclass
class _Vector:
    """A 1-D input (y or sample_weight): Dask row blocks, or an array in memory."""

    blocks: list[Any]  # delayed blocks of a Dask input; empty for an in-memory array
    lengths: list[int] | None  # block lengths when Dask knows them
    array: np.ndarray | None = None  # an in-memory input, cut to X's chunks later


def _as_vector(v: Any, what: str) -> _Vector:
    if _is_dask_frame(v):
        if _frame_kind(v) == "frame":
            if len(v.columns) != 1:
                raise ValueError(
                    f"{what} must be one column; got a DataFrame with {len(v.columns)} columns."
                )
            v = v[v.columns[0]]
        return _Vector(list(v.to_delayed()), None)
    if _is_dask_array(v):
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.ndim != 1:
            raise ValueError(f"{what} must be 1-D; got a Dask array of shape {v.shape}.")
        lengths = list(v.chunks[0])
        known = all(np.isfinite(lengths))
        return _Vector(list(v.to_delayed()), [int(n) for n in lengths] if known else None)
    arr = np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D; got an array of shape {arr.shape}.")
    return _Vector([], [len(arr)], arr)


def _realign(blocks: list[Any], lengths: list[int], target: list[int], name: str) -> list[Any]:
    """Blocks of a vector re-cut to the row chunks ``target`` of X (lazy)."""
    if lengths == target:
        return blocks
    starts = np.concatenate([[0], np.cumsum(lengths)])
    out, pos = [], 0
    for i, n in enumerate(target):
        pieces, stop = [], pos + n
        j = int(np.searchsorted(starts, pos, side="right")) - 1
        while pos < stop:
            take = min(stop, int(starts[j + 1]))
            pieces.append((blocks[j], pos - int(starts[j]), take - int(starts[j])))
            pos, j = take, j + 1
        out.append(_task(_slice_concat, pieces, name=f"{name}-{i}"))
    return out


def _cut_to(
    vec: _Vector, blocks: list[Any], lengths: list[int], target: list[int], name: str
) -> list[Any]:
    """The vector's blocks cut to X's row chunks: literal slices or realigned blocks."""
    if vec.array is None:
        return _realign(blocks, lengths, target, name)
    bounds = np.concatenate([[0], np.cumsum(target)])
    return [
        _literal(vec.array[bounds[i] : bounds[i + 1]], f"{name}-{i}") for i in range(len(target))
    ]


def build_row_data(
    X: Any,
    y: Any,
    *,
    sample_weight: Any = None,
    classes: Sequence[Any] | np.ndarray | None = None,
    class_weight: Mapping[Any, float] | str | None = None,
    fit_intercept: bool = True,
    dtype: Any = None,
    label_smoothing: float = 0.0,
) -> DaskRowData:
    """Persist the rows of a Dask collection on the cluster, ready for a solver.

    Steps (three passes over the source at most, the last two in memory):

    1. the row chunks of ``X`` (all its column blocks joined), ``y`` and
       ``sample_weight`` are cast and persisted in worker memory;
    2. one pass over the persisted chunks finds the chunk lengths, NaN/inf
       in ``X``, the distinct labels, their counts and weighted counts, and
       checks the weights; ``y`` and ``sample_weight`` are re-cut to the row
       chunks of ``X`` when their chunks differ;
    3. each chunk becomes the in-memory backend's rows (label codes, row
       weights ``s_i = sample_weight_i * class_weight[y_i]``), persisted.

    Works with whatever scheduler is active: a ``distributed.Client`` (any
    cluster) or Dask's default threaded scheduler.

    Parameters
    ----------
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
        Numeric rows, chunked along the rows (column chunks are joined).
        Chunks of SciPy sparse matrices are used as CSR.
    y : dask array, Dask Series, or array-like of shape (n_samples,)
        Labels of any sortable type. Chunks need not match those of ``X``.
    sample_weight : dask array, Dask Series, array-like of shape (n_samples,), float or None
        Row weights, finite and >= 0; None weighs every row 1.
    classes : array-like of shape (n_classes,), optional
        The labels, when known in advance; every label of ``y`` must be
        among them. Default: the distinct labels of ``y``.
    class_weight : dict, "balanced" or None
        scikit-learn's semantics; "balanced" uses the (sample-weighted)
        class counts of the validation pass.
    fit_intercept : bool, default True
    dtype : {None, "float32", "float64"}
        Compute dtype; None keeps float32 input as float32 and uses float64
        otherwise.

    Returns
    -------
    DaskRowData

    Raises
    ------
    ImportError
        When dask is not installed.
    TypeError
        Non-numeric ``X``, or ``X`` not a Dask collection.
    ValueError
        Wrong dimensions, mismatched lengths, NaN/inf in ``X``, invalid
        weights, fewer than two classes, labels missing from ``classes``.
    """
    dask, _ = _import_dask()

    from softmax._validation import (
        check_class_totals,
        check_classification_targets,
        check_weight_values,
        class_weight_vector,
    )

    Xa, dt, names = _as_dask_x(X, dtype)
    n_features = Xa.shape[1]
    if not np.isfinite(n_features):
        raise ValueError("X has an unknown number of columns; give its column chunks sizes.")
    grid = Xa.to_delayed()  # (row blocks, column blocks) of delayed chunks
    yv = _as_vector(y, "y")
    w_scalar = None
    if isinstance(sample_weight, numbers.Real):
        w_scalar = float(sample_weight)
        check_weight_values(not np.isfinite(w_scalar), w_scalar)
    wv = (
        None
        if sample_weight is None or w_scalar is not None
        else _as_vector(sample_weight, "sample_weight")
    )
    if wv is not None and wv.array is not None:
        try:
            wv.array = np.asarray(wv.array, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"sample_weight must hold numbers; could not convert ({exc})."
            ) from exc

    # -- pass 1: cast and persist (one read of the source, shared by X, y, w) -----
    token = uuid.uuid4().hex[:12]
    xs = [
        _task(_prepare_x, list(row), dt, name=f"softmax-x-{token}-{i}")
        for i, row in enumerate(grid)
    ]
    ys = [
        _task(_prepare_vector, b, None, name=f"softmax-y-{token}-{i}")
        for i, b in enumerate(yv.blocks)
    ]
    ws = [
        _task(_prepare_vector, b, np.float64, name=f"softmax-w-{token}-{i}")
        for i, b in enumerate(wv.blocks if wv is not None else [])
    ]
    persisted = dask.persist(*xs, *ys, *ws)
    xs = list(persisted[: len(xs)])
    ys = list(persisted[len(xs) : len(xs) + len(ys)])
    ws = list(persisted[len(xs) + len(ys) :])

    # -- pass 2a: chunk lengths and NaN/inf in X (in memory, tiny results) -----
    x_info, y_len, w_len = dask.compute(
        [_task(_x_summary, x, name=f"softmax-xinfo-{token}-{i}") for i, x in enumerate(xs)],
        yv.lengths or [dask.delayed(len)(b) for b in ys],
        (wv.lengths or [dask.delayed(len)(b) for b in ws]) if wv is not None else [],
    )
    x_len = [int(info[0]) for info in x_info]
    n_samples = sum(x_len)
    if any(info[2] for info in x_info):
        raise ValueError(
            "Input X contains NaN. Missing values are not supported; "
            "impute them first (e.g. dask_ml.impute.SimpleImputer) or drop those rows."
        )
    if any(info[3] for info in x_info):
        raise ValueError(
            f"Input X contains infinity or a value too large for {dt.name}. "
            "Remove or clip those values before fitting."
        )
    if n_samples == 0:
        raise ValueError("X has 0 rows; at least one row is needed to fit.")
    for what, lengths in (("y", y_len), ("sample_weight", w_len)):
        if lengths and sum(lengths) != n_samples:
            raise ValueError(
                f"X has {n_samples} rows but {what} has {sum(lengths)}; they must be "
                "the same rows."
            )
    ys = _cut_to(yv, ys, list(y_len), x_len, f"softmax-yr-{token}")
    ws = (
        _cut_to(wv, ws, list(w_len), x_len, f"softmax-wr-{token}")
        if wv is not None
        else [None] * len(xs)
    )
    # empty chunks (e.g. after filtering a frame) would only add tasks
    keep = [i for i, n in enumerate(x_len) if n > 0]
    xs, ys, ws = [xs[i] for i in keep], [ys[i] for i in keep], [ws[i] for i in keep]

    # -- pass 2b: labels, counts, weight checks ------------------------------
    summaries = [
        _task(_summarize, yb, wb, name=f"softmax-lab-{token}-{i}")
        for i, (yb, wb) in enumerate(zip(ys, ws))
    ]
    summary = dask.compute(_tree_sum(summaries, _merge_summaries, f"softmax-lab-{token}"))[0]
    if summary.labels.dtype.kind == "f" and np.isnan(summary.labels).any():
        raise ValueError("Input y contains NaN; every row needs a label.")
    check_classification_targets(summary.labels)
    check_weight_values(summary.w_nonfinite, summary.w_min if w_scalar is None else w_scalar)

    if classes is None:
        classes_ = summary.labels
    else:
        classes_ = np.unique(np.asarray(classes))
        if len(classes_) != len(np.asarray(classes)):
            raise ValueError("classes contains duplicates; give each label once.")
        missing = np.setdiff1d(summary.labels, classes_)
        if len(missing):
            raise ValueError(
                f"y contains labels {missing[:5].tolist()} that are not in classes "
                f"{classes_.tolist()}; pass every label that can occur."
            )
    if len(classes_) < 2:
        raise ValueError(
            f"This solver needs samples of at least 2 classes in the data, but the data "
            f"contains only one class: {classes_.tolist()}."
        )
    # counts per class of classes_ (zero for declared labels that never occur)
    pos = np.searchsorted(classes_, summary.labels)
    counts = np.zeros(len(classes_), dtype=np.int64)
    counts[pos] = summary.counts
    weighted = np.zeros(len(classes_))
    weighted[pos] = summary.weighted
    if w_scalar is not None:
        weighted *= w_scalar

    class_weights = None
    if class_weight is not None:
        # the one rule of every backend, from the validation pass's class totals
        class_weights = class_weight_vector(class_weight, classes_, weighted, counts)
    cw_full = np.ones(len(classes_)) if class_weights is None else class_weights
    totals = weighted * cw_full
    check_class_totals(classes_, totals, stacklevel=4)
    weight_sum = float(totals.sum())
    if w_scalar is not None:
        # a constant weight: fold it into the class weights (one multiply per row)
        class_weights = cw_full * w_scalar

    # -- pass 3: the persisted chunks the solver works on -------------------
    eps = check_label_smoothing(label_smoothing)
    cw_d = None if class_weights is None else _literal(class_weights, f"softmax-cw-{token}")
    cl_d = _literal(classes_, f"softmax-classes-{token}")
    chunks = [
        _task(
            _make_chunk, xb, yb, wb, cl_d, cw_d, fit_intercept, eps, name=f"softmax-c-{token}-{i}"
        )
        for i, (xb, yb, wb) in enumerate(zip(xs, ys, ws))
    ]
    chunks = list(dask.persist(*chunks))
    return DaskRowData(
        chunks,
        classes=classes_,
        n_samples=n_samples,
        n_features=int(n_features),
        fit_intercept=fit_intercept,
        dtype=dt,
        weight_sum=weight_sum,
        class_counts=counts,
        feature_names=names,
        is_sparse=any(info[4] for info in x_info),
        label_smoothing=eps,
    )


# ---------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------


def predict_dask(
    estimator: Any, X: Any, method: str = "predict", *, y: Any = None, sample_weight: Any = None
) -> Any:
    """A fitted estimator's predictions on Dask input, as a lazy Dask array.

    Each row chunk is predicted by the estimator's own in-memory method, so
    the values equal those of the in-memory call on the same rows. The
    estimator is copied into the graph when this is called: refitting it
    afterwards does not change the returned array.

    Parameters
    ----------
    estimator : fitted SoftmaxRegression
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
    method : {"predict", "predict_proba", "predict_log_proba", "decision_function", "score"}
        "score" is the (weighted) accuracy against ``y``, computed at once.
    y : Dask array or Series, or array-like of shape (n_samples,)
        True labels; only for "score".
    sample_weight : Dask array or Series, or array-like of shape (n_samples,), optional
        Only for "score".

    Returns
    -------
    dask.array.Array or float
        Of shape (n_samples,) with the labels of ``classes_`` for "predict";
        of shape (n_samples, n_classes) otherwise, in the dtype the in-memory
        method returns. Row chunks follow those of ``X`` (unknown sizes for
        a DataFrame, as ``to_dask_array`` gives them). A float for "score".

    Examples
    --------
    >>> import dask.array as da
    >>> Xd = da.from_array(X, chunks=(1000, -1))  # doctest: +SKIP
    >>> proba = predict_dask(model, Xd, "predict_proba")  # lazy  # doctest: +SKIP
    >>> proba.compute()  # doctest: +SKIP
    """
    _, da = _import_dask()
    from sklearn.utils.validation import check_is_fitted

    if method == "score":
        return _score_dask(estimator, X, y, sample_weight)
    if method not in PREDICT_METHODS:
        raise ValueError(f"method must be one of {(*PREDICT_METHODS, 'score')}; got {method!r}.")
    check_is_fitted(estimator)
    n_features = estimator.n_features_in_
    names = getattr(estimator, "feature_names_in_", None)
    token = uuid.uuid4().hex[:12]
    # a snapshot, as one key of the graph that every chunk's task shares
    snapshot = copy.deepcopy(estimator)
    model = _literal(snapshot, f"softmax-model-{token}")

    if _is_dask_frame(X):
        if _frame_kind(X) == "series":
            raise ValueError("X is a Dask Series; pass a 2-D DataFrame, e.g. s.to_frame().")
        if len(X.columns) != n_features:
            raise ValueError(
                f"X has {len(X.columns)} features, but {type(estimator).__name__} is "
                f"expecting {n_features} features as input."
            )
        if names is not None and [str(c) for c in X.columns] != [str(c) for c in names]:
            raise ValueError(
                "The feature names of X differ from those seen in fit; select the same "
                f"columns in the same order: {list(names)[:5]}..."
            )
        # dtype and shape of the output from one made-up row of the right dtypes
        probe = _predict_block(X._meta_nonempty.iloc[:1], snapshot, method)
        parts = [
            da.from_delayed(
                _task(_predict_block, part, model, method, name=f"softmax-{method}-{token}-{i}"),
                shape=(np.nan, *probe.shape[1:]),
                dtype=probe.dtype,
                meta=probe[:0],
            )
            for i, part in enumerate(X.to_delayed())
        ]
        return da.concatenate(parts, axis=0)

    if not _is_dask_array(X):
        raise TypeError(f"X must be a Dask array or DataFrame; got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2-D Dask array (n_samples, n_features); got {X.ndim} dimension(s)."
        )
    if X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{n_features} features as input."
        )
    X = X.rechunk({1: -1})  # each task needs whole rows
    probe = _predict_block(np.zeros((1, n_features), dtype=X.dtype), snapshot, method)
    if probe.ndim == 1:  # predict: labels of classes_
        return X.map_blocks(
            _predict_block, model, method, drop_axis=1, dtype=probe.dtype, meta=probe[:0]
        )
    return X.map_blocks(
        _predict_block,
        model,
        method,
        chunks=(X.chunks[0], probe.shape[1:]),
        dtype=probe.dtype,
        meta=probe[:0],
    )


def _as_dask_vector(v: Any, chunks: tuple[int, ...], what: str) -> Any:
    """A 1-D Dask array of ``v`` with the row chunks ``chunks`` (known sizes)."""
    _, da = _import_dask()
    if _is_dask_frame(v):
        with warnings.catch_warnings():
            # string labels become an object array, which is what comparing needs
            warnings.filterwarnings("ignore", "Dask currently has limited support")
            v = v.to_dask_array(lengths=True)
    if not _is_dask_array(v):
        v = np.asarray(v)
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.ndim != 1 or len(v) != sum(chunks):
            raise ValueError(f"{what} must be 1-D with one value per row of X ({sum(chunks)}).")
        return da.from_array(v, chunks=(chunks,))
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"{what} must be 1-D; got a Dask array of shape {v.shape}.")
    if not all(np.isfinite(v.chunks[0])):
        v = da.Array(v.dask, v.name, v.chunks, meta=v._meta).compute_chunk_sizes()
    if v.shape[0] != sum(chunks):
        raise ValueError(f"X has {sum(chunks)} rows but {what} has {v.shape[0]}.")
    return v.rechunk((chunks,))


def _score_dask(estimator: Any, X: Any, y: Any, sample_weight: Any) -> float:
    """Mean (weighted) accuracy of the predictions on Dask ``X`` against ``y``."""
    dask, _ = _import_dask()
    if y is None:
        raise ValueError("score needs the true labels y.")
    pred = predict_dask(estimator, X, "predict")
    if not all(np.isfinite(pred.chunks[0])):
        pred = pred.compute_chunk_sizes()  # our own array: sizing it in place is fine
    chunks = pred.chunks[0]
    correct = pred == _as_dask_vector(y, chunks, "y")
    if sample_weight is None:
        return float(correct.mean().compute())
    w = _as_dask_vector(sample_weight, chunks, "sample_weight").astype(np.float64)
    hits, total = dask.compute((correct * w).sum(), w.sum())
    return float(hits / total)
