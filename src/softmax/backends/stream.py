"""Rows streamed from files in blocks: exact fits on data bigger than memory.

:func:`build_row_data` turns a :class:`softmax.streaming.FileSource` into a
:class:`~softmax.backends._base.RowData`. Every loss/gradient evaluation (and
every Hessian-vector product) is one pass over the blocks of the file, each
block computed with the same :mod:`softmax.linear_loss` functions as the
in-memory backend, and summed in float64. The batch solvers therefore reach
the in-memory solution (the sums differ only by the order of float64
additions), while memory holds one block, the model and a few ``coef``-sized
vectors whatever the size of the file.

Stochastic solvers get :meth:`StreamData.iter_minibatches`: units of the file
(blocks, or Parquet row groups) in a random order, rows shuffled within each
block.

When the source has a ``checkpoint`` directory, every answer is logged there
(:class:`softmax._persist.Checkpoint`) and replayed to a restarted fit.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from softmax._persist import Checkpoint, progress_bar
from softmax._validation import (
    check_class_totals,
    check_sample_weight,
    class_weight_vector,
)
from softmax.backends._base import BLOCK_SUMS, Capability, RowData, check_batch_size
from softmax.linear_loss import (
    block_curvature_moments,
    block_hessian,
    block_hessp,
    block_information,
    block_loss_gradient,
    column_moments,
)
from softmax.losses import check_label_smoothing
from softmax.streaming import FileSource

__all__ = ["StreamData", "build_row_data"]


def _check_magnitude(source: FileSource, dtype: np.dtype) -> None:
    """Refuse rows whose products overflow ``dtype`` (in memory they are rescaled).

    Streamed blocks are not rescaled (every reader of the backend would have
    to know), so the refusal says how to fit them: a power of two divides
    them exactly.
    """
    from softmax._scaling import SCALE_ABOVE

    limit = SCALE_ABOVE.get(np.dtype(dtype))
    if limit is None or not source.max_abs > limit:
        return
    exponent = math.frexp(source.max_abs)[1]
    raise ValueError(
        f"the features of {source.paths[0]} reach {source.max_abs:.3g}: the products a "
        f"solver forms overflow {np.dtype(dtype).name}, and streamed rows are not rescaled. "
        f"Divide the features by 2**{exponent} first (exact: a power of two), or fit the "
        "rows in memory, where softmax rescales them exactly."
    )


def build_row_data(
    X: Any,
    y: Any = None,
    *,
    sample_weight: Any = None,
    classes: Any = None,
    class_weight: Any = None,
    fit_intercept: bool = True,
    dtype: Any = None,
    label_smoothing: float = 0.0,
) -> StreamData:
    """A :class:`StreamData` over a file source (the estimator's entry point).

    Parameters
    ----------
    X : FileSource
        Any object with ``__softmax_row_source__ = True`` and the
        :class:`~softmax.streaming.FileSource` reading methods.
    y : None
        A source carries its labels (``target=``); passing ``y`` is an error.
    sample_weight : array-like of shape (n_samples,), optional
        Per-row weights in file order (for weights stored in the file use
        ``FileSource(weight=...)`` instead).
    classes : array-like, optional
        Class labels to encode against (default: the source's, found in its
        first pass). Every label of the file must be one of them.
    class_weight : dict, "balanced" or None
        As in scikit-learn; ``"balanced"`` costs one pass over the labels.
    fit_intercept : bool, default True
    dtype : {numpy.float32, numpy.float64}, optional
        Compute dtype; default the source's.

    Returns
    -------
    StreamData

    Raises
    ------
    TypeError
        If ``X`` is not a row source.
    ValueError
        If ``y`` is given, a weight array has the wrong length or bad values,
        or a label is not among ``classes``.
    """
    if not getattr(X, "__softmax_row_source__", False):
        raise TypeError(f"expected a FileSource, got {type(X).__name__}")
    if y is not None:
        raise ValueError(
            "a FileSource carries its own labels (its target= column); call fit(source) without y"
        )
    source: FileSource = X
    source.scan()
    _check_magnitude(source, source.dtype if dtype is None else np.dtype(dtype))
    cls = source.classes
    if classes is not None:
        from softmax.streaming import _unique_labels

        cls = _unique_labels(classes)
        if source._scan is not None and source._scan.label_kind not in ("native",):
            from softmax.streaming import _as_kind

            cls = _as_kind(cls.astype(str), source._scan.label_kind)
        missing = np.setdiff1d(source.classes, cls)
        if missing.size:
            raise ValueError(
                f"the file has labels {missing[:10].tolist()} that are not in classes"
            )
    sw = None
    if sample_weight is not None:
        if source.weight is not None:
            raise ValueError(
                "the source already has a weight column; give sample weights once "
                "(either FileSource(weight=...) or fit(sample_weight=...))"
            )
        if np.ndim(sample_weight) == 0:
            sample_weight = np.full(source.n_samples, sample_weight, dtype=np.float64)
        sw = check_sample_weight(sample_weight, source.n_samples)
    cw = None
    if class_weight is not None:
        totals, counts = _class_totals(source, cls, sw)
        cw = class_weight_vector(class_weight, cls, totals, counts)
        check_class_totals(cls, totals * cw)
    return StreamData(
        source,
        classes=cls,
        sample_weight=sw,
        class_weights=cw,
        fit_intercept=fit_intercept,
        dtype=source.dtype if dtype is None else np.dtype(dtype),
        label_smoothing=label_smoothing,
    )


def _class_totals(
    source: FileSource, classes: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Total sample weight and rows of each class: one pass over the labels."""
    K = len(classes)
    totals = np.zeros(K, dtype=np.float64)
    counts = np.zeros(K, dtype=np.int64)
    for b in source.iter_blocks():
        w = b.weight
        if sample_weight is not None:
            w = sample_weight[b.start : b.start + b.X.shape[0]]
        codes = source.encode(b.y, classes)
        totals += np.bincount(codes, weights=w, minlength=K)
        counts += np.bincount(codes, minlength=K)
    return totals, counts


def _digest(kind: str, *arrays: np.ndarray) -> str:
    h = hashlib.sha256(kind.encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


class StreamData(RowData):
    """Rows of a :class:`~softmax.streaming.FileSource`, one pass per evaluation.

    Parameters
    ----------
    source : FileSource
        A scanned source.
    classes : ndarray of shape (n_classes,)
        Sorted class labels; codes index them.
    sample_weight : ndarray of shape (n_samples,) or None
        Weights by row index (file order); the source's weight column is
        used when it has one.
    class_weights : ndarray of shape (n_classes,) or None
    fit_intercept : bool
    dtype : numpy.dtype
        Blocks are cast to it.
    label_smoothing : float in [0, 1), default 0.0
        Smoothed targets in the data term (see :class:`RowData`).

    Attributes
    ----------
    checkpoint : Checkpoint or None
        Where evaluations are logged (from ``source.checkpoint``).
    n_replayed : int
        Evaluations answered from the checkpoint log instead of the file.
    record_evaluations : bool
        Log and replay evaluations (solvers that checkpoint their own state,
        like ``"sgd"``, turn it off).
    """

    def __init__(
        self,
        source: FileSource,
        *,
        classes: np.ndarray,
        sample_weight: np.ndarray | None,
        class_weights: np.ndarray | None,
        fit_intercept: bool,
        dtype: np.dtype,
        label_smoothing: float = 0.0,
    ) -> None:
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.source = source
        self.classes = classes
        self.n_samples = source.n_samples
        self.n_features = source.n_features
        self.feature_names = list(source.feature_names)
        self.fit_intercept = bool(fit_intercept)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self._sample_weight = sample_weight
        self._class_weights = class_weights
        self.n_passes = 0
        self.n_replayed = 0
        self.capabilities = BLOCK_SUMS
        if source.checkpoint is not None:
            self.capabilities |= {Capability.EVALUATION_LOG}
        self.record_evaluations = source.checkpoint is not None
        self._n_evals = 0
        self._moments: tuple[np.ndarray, np.ndarray] | None = None
        self._cache: _BlockCache | None = None
        if source.cache is not None:
            fp = source.fingerprint()  # what the cached bytes depend on: file, columns, encoding
            fp.update(
                classes=np.asarray(classes).astype(str).tolist(), compute_dtype=self.dtype.name
            )
            self._cache = _BlockCache(source.cache, fp, self.n_features)
        self.weight_sum = self._weight_sum()
        self.checkpoint: Checkpoint | None = None
        if source.checkpoint is not None:
            self.checkpoint = Checkpoint(source.checkpoint)
            self.checkpoint.bind(self._fingerprint())

    # -- helpers ----------------------------------------------------------------

    @property
    def unweighted(self) -> bool:
        return (
            self._sample_weight is None
            and self._class_weights is None
            and self.source.weight is None
        )

    def _weight_sum(self) -> float:
        if self.unweighted:
            return float(self.n_samples)
        total = 0.0
        for _, _, w in self._blocks():
            total += float(np.sum(w, dtype=np.float64))
        return total

    def _fingerprint(self) -> dict[str, Any]:
        fp = self.source.fingerprint()
        fp.update(
            classes=np.asarray(self.classes).astype(str).tolist(),
            fit_intercept=self.fit_intercept,
            compute_dtype=self.dtype.name,
            sample_weight=None
            if self._sample_weight is None
            else _digest("w", self._sample_weight),
            class_weights=None if self._class_weights is None else self._class_weights.tolist(),
        )
        if self.label_smoothing:  # logs of unsmoothed fits keep their fingerprint
            fp.update(label_smoothing=self.label_smoothing)
        return fp

    def _weights(self, start: int, codes: np.ndarray, w: np.ndarray | None) -> np.ndarray | None:
        """Row weights ``s_i`` of a block from its file weights (or None: all ones)."""
        if self._sample_weight is not None:
            w = self._sample_weight[start : start + codes.shape[0]]
        if self._class_weights is not None:
            cw = self._class_weights[codes]
            w = cw if w is None else w * cw
        return w

    def _raw_unit(self, u: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, Any]]:
        """``(start, X, codes, file weights)`` of the blocks of unit ``u``.

        From the block cache once it is built, else decoded from the file.
        """
        after = -1  # first row of the last block handed out from the cache
        if self._cache is not None and self._cache.complete:
            try:
                for block in self._cache.read_unit(u):
                    yield block
                    after = block[0]
                return
            except _CacheDamaged as exc:
                # Bytes that do not match their digest are never used: this
                # unit's remaining blocks come from the file, and the next
                # full pass in file order rebuilds the cache.
                self._cache.discard(str(exc))
        for block in self.source.read_unit(u):
            if block.start <= after:
                continue
            X = block.X if block.X.dtype == self.dtype else block.X.astype(self.dtype)
            yield block.start, X, self.source.encode(block.y, self.classes), block.weight

    def _unit_arrays(self, u: int) -> Iterator[tuple[np.ndarray, np.ndarray, Any]]:
        """``(X, codes, weights)`` of the blocks of unit ``u``."""
        for start, X, codes, w in self._raw_unit(u):
            yield X, codes, self._weights(start, codes, w)

    def _blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray, Any]]:
        """Every block in file order; the first full pass also fills the cache."""
        writer = None
        if self._cache is not None and not self._cache.complete:
            writer = self._cache.writer()
        for u in range(self.source.n_units):
            for start, X, codes, w in self._raw_unit(u):
                if writer is not None:
                    writer.add(u, start, X, codes, w)
                yield X, codes, self._weights(start, codes, w)
        if writer is not None:
            writer.finish()

    def _pass(self, desc: str, fn: Callable[[np.ndarray, np.ndarray, Any], float]) -> float:
        """Apply ``fn`` to every block; returns the summed loss. One pass."""
        bar = progress_bar(self.source.progress, self.n_samples, desc)
        loss = 0.0
        try:
            for X, y, w in self._blocks():
                loss += fn(X, y, w)
                bar.update(X.shape[0])
                bar.set_postfix(loss=f"{loss / max(bar.n, 1):.4g}", refresh=False)
        finally:
            bar.close()
        self.n_passes += 1
        return loss

    # -- checkpoint replay ------------------------------------------------------

    def _replay(self, key: str) -> dict[str, np.ndarray] | None:
        """The logged answer to the next question if it is this one."""
        if self.checkpoint is None or not self.record_evaluations:
            return None
        rec = self.checkpoint.eval_record(self._n_evals)
        if rec is None:
            return None
        if str(rec["key"]) != key:
            # The fit took another path from here on (other C, solver, start):
            # the rest of the log answers other questions. Drop it.
            self.checkpoint.truncate_evals(self._n_evals)
            return None
        self._n_evals += 1
        self.n_replayed += 1
        return rec

    def _record(self, key: str, **arrays: Any) -> None:
        if self.checkpoint is None or not self.record_evaluations:
            return
        self.checkpoint.save_eval(self._n_evals, key=np.str_(key), **arrays)
        self._n_evals += 1

    # -- RowData ----------------------------------------------------------------

    def loss_gradient(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        """Summed weighted cross-entropy and gradient: one pass over the file."""
        key = _digest("lg", coef)
        rec = self._replay(key)
        if rec is not None:
            self.n_passes += 1
            return float(rec["loss"]), np.array(rec["grad"])
        grad = np.zeros(self.coef_shape, dtype=np.float64)
        eps = self.label_smoothing

        def fn(X, y, w):
            loss, g = block_loss_gradient(
                coef, X, y, w, fit_intercept=self.fit_intercept, label_smoothing=eps
            )
            grad[...] += g
            return loss

        loss = self._pass("loss+gradient", fn)
        self._record(key, loss=loss, grad=grad)
        return loss, grad

    def feature_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean of each feature and of its square (one pass, cached).

        :attr:`Capability.FEATURE_MOMENTS`, the sum over blocks of
        :func:`softmax.linear_loss.column_moments`: with it the batch solvers
        precondition a streamed fit as they do an in-memory one, which saves
        many passes over the file when features are unscaled.

        Returns
        -------
        mean, sq_mean : ndarray of shape (n_features,), float64
        """
        if self._moments is None:
            key = _digest("fm", np.zeros(0))
            rec = self._replay(key)
            if rec is not None:
                self._moments = (np.array(rec["mean"]), np.array(rec["sq_mean"]))
                return self._moments
            s1 = np.zeros(self.n_features)
            s2 = np.zeros(self.n_features)
            for X, _, w in self._blocks():
                b1, b2 = column_moments(X, w)
                s1 += b1
                s2 += b2
            total = max(self.weight_sum, 1e-300)
            self._moments = (s1 / total, s2 / total)
            self._record(key, mean=self._moments[0], sq_mean=self._moments[1])
        return self._moments

    def curvature_moments(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Curvature-weighted row moments at ``coef``, summed over blocks (one pass).

        See :func:`softmax.linear_loss.block_curvature_moments`; the solvers
        refresh their preconditioner with it.
        """
        key = _digest("cm", coef)
        rec = self._replay(key)
        if rec is not None:
            self.n_passes += 1
            return np.array(rec["s0"]), np.array(rec["s1"]), np.array(rec["s2"])
        K, p = self.n_classes, self.n_features
        s0, s1, s2 = np.zeros(K), np.zeros((K, p)), np.zeros((K, p))

        def fn(X, y, w):
            b0, b1, b2 = block_curvature_moments(coef, X, w, fit_intercept=self.fit_intercept)
            s0[...] += b0
            s1[...] += b1
            s2[...] += b2
            return 0.0

        self._pass("curvature", fn)
        self._record(key, s0=s0, s1=s1, s2=s2)
        return s0, s1, s2

    def loss(self, coef: np.ndarray) -> float:
        """Summed weighted cross-entropy alone (one pass, no gradient product)."""
        key = _digest("l", coef)
        rec = self._replay(key)
        if rec is not None:
            self.n_passes += 1
            return float(rec["loss"])

        def fn(X, y, w):
            return block_loss_gradient(
                coef,
                X,
                y,
                w,
                fit_intercept=self.fit_intercept,
                need_gradient=False,
                label_smoothing=self.label_smoothing,
            )[0]

        loss = self._pass("loss", fn)
        self._record(key, loss=loss)
        return loss

    def gradient_hessian_product(
        self, coef: np.ndarray
    ) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Loss, gradient (one pass) and ``V -> H V`` (one pass per product).

        The per-block probabilities are recomputed at every product rather
        than kept: keeping them would take ``n_samples * n_classes`` memory,
        which is what streaming avoids.
        """
        coef = np.array(coef, dtype=np.float64)  # frozen: hessp may run later
        loss, grad = self.loss_gradient(coef)

        def hessp(V: np.ndarray) -> np.ndarray:
            V = np.asarray(V, dtype=np.float64).reshape(coef.shape)
            key = _digest("hv", coef, V)
            rec = self._replay(key)
            if rec is not None:
                self.n_passes += 1
                return np.array(rec["hv"])
            out = np.zeros(coef.shape, dtype=np.float64)

            def fn(X, y, w):
                _, _, hp = block_hessp(coef, X, y, w, fit_intercept=self.fit_intercept)
                out[...] += hp(V)
                return 0.0

            self._pass("Hessian product", fn)
            self._record(key, hv=out)
            return out

        return loss, grad, hessp

    def hessian(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss, gradient and the full Hessian, summed over blocks in one pass."""
        key = _digest("H", coef)
        rec = self._replay(key)
        if rec is not None:
            self.n_passes += 1
            return float(rec["loss"]), np.array(rec["grad"]), np.array(rec["H"])
        n_coef = self.coef_shape[0] * self.coef_shape[1]
        grad = np.zeros(self.coef_shape, dtype=np.float64)
        H = np.zeros((n_coef, n_coef), dtype=np.float64)
        eps = self.label_smoothing

        def fn(X, y, w):
            loss, g, h = block_hessian(
                coef, X, y, w, fit_intercept=self.fit_intercept, label_smoothing=eps
            )
            grad[...] += g
            H[...] += h
            return loss

        loss = self._pass("Hessian", fn)
        self._record(key, loss=loss, grad=grad, H=H)
        return loss, grad, H

    def information(
        self,
        coef: np.ndarray,
        reference: int,
        *,
        meat: str | None = None,
        groups: np.ndarray | None = None,
    ) -> Any:
        """Log-likelihood, score, information (and HC0 meat), summed over blocks in one pass.

        :attr:`Capability.INFORMATION` (see
        :func:`softmax.linear_loss.block_information`). The cluster meat needs
        the rows in group order: not on a stream.
        """
        self._check_unsmoothed("the information")
        if meat == "cluster" or groups is not None:
            raise ValueError(
                "the cluster-robust covariance visits the rows cluster by cluster: it needs "
                "the rows in memory, not a file stream"
            )
        coef = np.asarray(coef, dtype=np.float64)
        total: Any = None

        def fn(X, y, w):
            nonlocal total
            part = block_information(
                coef, X, y, w, reference=reference, fit_intercept=self.fit_intercept, meat=meat
            )
            total = part if total is None else total.add(part)
            return part.loglik

        self._pass("information", fn)
        self.n_passes -= 1  # not a solver's pass
        return total

    def iter_minibatches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """One epoch of minibatches: units in random order, rows shuffled per block.

        Each block of ``b`` rows is cut into ``ceil(b / batch_size)`` batches
        of nearly equal size (no tiny last batch whose noisy gradient would
        get a full step). Compressed NPZ members, which cannot be read out of
        order, are visited front to back with rows shuffled per block.

        Parameters
        ----------
        batch_size : int
            Largest number of rows per batch.
        rng : numpy.random.Generator
            Source of the shuffle. Each unit gets its own child seed drawn
            up front, so the batches of a unit do not depend on which units
            were read before it.
        """
        check_batch_size(batch_size)
        n_units = self.source.n_units
        order = np.arange(n_units) if self.source.sequential_only else rng.permutation(n_units)
        seeds = rng.integers(0, 2**63 - 1, size=n_units)
        self.n_passes += 1
        for u in order:
            urng = np.random.default_rng(int(seeds[u]))
            for X, y, w in self._unit_arrays(int(u)):
                if w is None:
                    w = np.ones(X.shape[0], dtype=np.float64)
                perm = urng.permutation(X.shape[0])
                n_batches = math.ceil(X.shape[0] / batch_size)
                for idx in np.array_split(perm, n_batches):
                    idx.sort()  # sorted gather reads memory front to back
                    yield X[idx], y[idx], w[idx]


class _BlockCache:
    """Parsed blocks saved as raw binary files, so later passes skip parsing.

    The first complete pass in file order writes every block's features (in
    the compute dtype), label codes (int64) and the file's weight column
    (float64, when it has one) to ``X.bin``, ``y.bin`` and ``w.bin`` in
    ``path``, then ``index.json`` (atomically) with each block's unit, first
    row and length and the fingerprint of the file and the encoding. Sample
    and class weights are applied on reading, so fits with other weights
    share the cache. Later passes, and later
    fits on the same source, read blocks back with positioned reads, which
    costs a fraction of decoding CSV or Parquet. A cache whose fingerprint
    does not match is rebuilt.

    ``index.json`` also holds a SHA-256 digest of each block's stored bytes
    (features, codes and weights). A block is checked the first time a fit
    reads it, and again whenever the cache files have changed since (their
    inode, size, mtime or ctime differ): a block that is short or whose
    bytes were altered (even with the length kept) is never used. The pass
    reads that unit from the file instead, with a RuntimeWarning naming the
    cache, and the next full pass rebuilds it.
    """

    def __init__(self, path: str, fingerprint: dict[str, Any], n_features: int) -> None:
        import json

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.dtype = np.dtype(fingerprint["compute_dtype"])
        self.p = n_features
        # unit -> [(row in the cache files, row in the source, rows, digest)]
        self.blocks: dict[int, list[tuple[int, int, int, str]]] = {}
        self.weighted = False
        self.complete = False
        # Blocks whose digest was checked, while the files keep this identity
        # (inode, size, mtime, ctime): hashing costs about as much as the pass's
        # arithmetic, so each block is checked once per fit, and again after
        # any change to the files.
        self._checked: set[int] = set()
        self._stamp: tuple[Any, ...] = ()
        index = self.path / "index.json"
        if index.exists():
            try:
                meta = json.loads(index.read_bytes())
                if meta.get("fingerprint") == self.fingerprint:
                    digests = meta["digests"]
                    if len(digests) != len(meta["blocks"]):
                        raise ValueError(
                            f"{len(digests)} digests for {len(meta['blocks'])} blocks"
                        )
                    for (u, pos, start, n), digest in zip(meta["blocks"], digests):
                        if not isinstance(digest, str):
                            raise TypeError(f"a digest is {type(digest).__name__}, not str")
                        self.blocks.setdefault(int(u), []).append(
                            (int(pos), int(start), int(n), digest)
                        )
                    self.weighted = bool(meta["weighted"])
                    self.complete = True
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # A damaged index is rebuilt by the next full pass, never trusted.
                import warnings

                self.blocks, self.weighted, self.complete = {}, False, False
                warnings.warn(
                    f"block cache index {index} is damaged ({type(exc).__name__}: {exc}); "
                    "rebuilding the cache",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def writer(self) -> _CacheWriter:
        return _CacheWriter(self)

    def read_unit(self, u: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, Any]]:
        """``(start, X, codes, file weights)`` of unit ``u``'s blocks, each checked.

        Raises
        ------
        _CacheDamaged
            Before a block that is short or does not match its digest is
            handed out (the blocks before it were whole).
        """
        p, dt = self.p, self.dtype
        with (
            open(self.path / "X.bin", "rb") as fx,
            open(self.path / "y.bin", "rb") as fy,
            contextlib.ExitStack() as stack,
        ):
            fw = stack.enter_context(open(self.path / "w.bin", "rb")) if self.weighted else None
            stamp = tuple(_identity(os.fstat(f.fileno())) for f in (fx, fy, fw) if f is not None)
            if stamp != self._stamp:  # the files changed since their blocks were checked
                self._stamp, self._checked = stamp, set()
            for pos, start, n, digest in self.blocks.get(u, []):
                fx.seek(pos * p * dt.itemsize)
                X = np.fromfile(fx, dtype=dt, count=n * p)
                fy.seek(pos * 8)
                y = np.fromfile(fy, dtype=np.int64, count=n)
                w = None
                if fw is not None:
                    fw.seek(pos * 8)
                    w = np.fromfile(fw, dtype=np.float64, count=n)
                if X.shape[0] != n * p or y.shape[0] != n or (w is not None and w.shape[0] != n):
                    raise _CacheDamaged(f"the block of rows {start}..{start + n - 1} is short")
                if pos not in self._checked:
                    if _block_digest(X, y, w) != digest:
                        raise _CacheDamaged(
                            f"the block of rows {start}..{start + n - 1} does not match its digest"
                        )
                    self._checked.add(pos)
                yield start, X.reshape(n, p), y, w

    def discard(self, why: str) -> None:
        """Stop reading the cache (``why`` says what was wrong); a full pass rebuilds it."""
        import warnings

        self.blocks, self.weighted, self.complete = {}, False, False
        self._checked, self._stamp = set(), ()
        (self.path / "index.json").unlink(missing_ok=True)
        warnings.warn(
            f"block cache {self.path}: {why}; reading the file instead and rebuilding the cache",
            RuntimeWarning,
            stacklevel=4,
        )


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file is rewritten or replaced."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _CacheDamaged(Exception):
    """A cached block that must not be used (short, or altered bytes)."""


def _block_digest(X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> str:
    """SHA-256 of a cached block's stored bytes: features, codes and weights."""
    h = hashlib.sha256()
    for a in (X, y) if w is None else (X, y, w):
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


class _CacheWriter:
    def __init__(self, cache: _BlockCache) -> None:
        self.cache = cache
        (cache.path / "index.json").unlink(missing_ok=True)
        self.fx = open(cache.path / "X.bin", "wb")  # noqa: SIM115 - closed in finish()
        self.fy = open(cache.path / "y.bin", "wb")  # noqa: SIM115
        self.fw: Any = None
        self.rows = 0
        self.blocks: list[tuple[int, int, int, int]] = []
        self.digests: list[str] = []

    def add(self, u: int, start: int, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> None:
        X = np.ascontiguousarray(X, dtype=self.cache.dtype)
        y = np.ascontiguousarray(y, dtype=np.int64)
        X.tofile(self.fx)
        y.tofile(self.fy)
        if w is not None:
            if self.fw is None:
                self.fw = open(self.cache.path / "w.bin", "wb")  # noqa: SIM115
            w = np.ascontiguousarray(w, dtype=np.float64)
            w.tofile(self.fw)
        self.blocks.append((u, self.rows, start, X.shape[0]))
        self.digests.append(_block_digest(X, y, w))
        self.rows += X.shape[0]

    def finish(self) -> None:
        import json

        from softmax._persist import atomic_write_bytes

        for f in (self.fx, self.fy, self.fw):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
                f.close()
        meta = {
            "fingerprint": self.cache.fingerprint,
            "blocks": self.blocks,
            "digests": self.digests,
            "weighted": self.fw is not None,
        }
        atomic_write_bytes(self.cache.path / "index.json", json.dumps(meta).encode())
        c = self.cache
        c.blocks = {}
        for (u, pos, start, n), digest in zip(self.blocks, self.digests):
            c.blocks.setdefault(u, []).append((pos, start, n, digest))
        c.weighted = self.fw is not None
        c.complete = True
        # The bytes just written are the digested ones: checked while the files stay as they are.
        names = ("X.bin", "y.bin", "w.bin") if c.weighted else ("X.bin", "y.bin")
        c._stamp = tuple(_identity(os.stat(c.path / name)) for name in names)
        c._checked = {pos for _, pos, _, _ in self.blocks}
