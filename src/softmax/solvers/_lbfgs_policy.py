"""When L-BFGS preconditions and how much history it keeps.

The policy shared by the host loop (:mod:`softmax.solvers.lbfgs`) and the
device loop (:mod:`softmax.solvers._device_lbfgs`), kept apart so that
neither imports the other.
"""

from __future__ import annotations

from softmax.backends._base import Capability, RowData

__all__ = [
    "CLASS_BLOCK_MAX_REFRESH",
    "CLASS_BLOCK_ROWS",
    "HISTORY_BYTES",
    "HISTORY_SIZE",
    "KRONECKER_MAX_CLASSES",
    "KRONECKER_START",
    "KRONECKER_WORK",
    "default_history",
    "refresh_due",
    "use_class_blocks",
    "use_class_scaled",
    "use_kronecker",
]

#: Default number of correction pairs kept. On MNIST digits (X / 255, C=1)
#: with the diagonal preconditioner m = 10, 50, 100 took 231, 200, 175
#: iterations to a 1e-6 gap; with the Kronecker one 50 and 100 both take
#: about 72 (docs/solvers.md), and 50 halves the two-loop's memory traffic.
#: The history is capped at HISTORY_BYTES of memory.
HISTORY_SIZE = 50
#: Memory the (s, y) history may take at most (two vectors per pair).
HISTORY_BYTES = 64 << 20


#: Multiply-adds per pass (n_samples * n_features * n_classes) from which
#: ``preconditioner="auto"`` considers the Kronecker preconditioner.
KRONECKER_WORK = 10_000_000
#: Iteration after which the Kronecker preconditioner replaces the diagonal
#: one (then refreshed every ``precondition_every``). Problems solved within
#: it never pay for the feature covariance; on MNIST (X / 255, C = 1)
#: switching after 5 rather than 20 iterations took 79 -> 72 iterations to a
#: 1e-6 gap (class curvature from a row subsample, 2048 rows).
KRONECKER_START = 5
#: Most classes for which ``preconditioner="auto"`` considers the Kronecker
#: preconditioner. Its feature factor is one covariance shared by all classes
#: around one mean, while each class's block of the Hessian weighs the rows
#: where that class is probable, around the class's own mean: with many
#: classes these differ, and per-class means and scales capture more. Its
#: class factor also costs ``O(K^3)`` per refresh and ``O(K^2 p)`` per
#: iteration. On linear-probe rows (256 features, 1,000 classes; 25,000 rows)
#: Kronecker took 40 iterations to a 1e-6 gap against 34 for the diagonal one,
#: at 1.5x the time per iteration; on wide100c (100 classes) it still wins.
#: Above it "auto" uses the per-class scaled preconditioner
#: (:func:`use_class_scaled`): 12 iterations against the diagonal's 23 on
#: 10,000 such rows.
KRONECKER_MAX_CLASSES = 300


def use_kronecker(data: RowData) -> bool:
    """Whether ``"auto"`` picks the Kronecker preconditioner for ``data``.

    When the backend offers ``feature_covariance`` (dense X of at most 2048
    features in memory) and a pass is big enough that the preconditioner's
    ``O(K p^2)`` products and its setup are small next to the passes it saves,
    and for at most ``KRONECKER_MAX_CLASSES`` classes.
    Measured (docs/solvers.md): on MNIST (8000 x 784) 149 -> 75 iterations at
    C = 1 and 554 -> 330 at C = 100; on digits (1797 x 64) no gain.
    """
    if Capability.FEATURE_COVARIANCE not in data.capabilities:
        return False
    if data.n_classes > KRONECKER_MAX_CLASSES:
        return False
    return data.n_samples * data.n_features * data.n_classes >= KRONECKER_WORK


#: Rows the class blocks are estimated from: backends take an even stride of
#: about this many (the in-memory one: ``CURVATURE_ROWS``, 2,048 to 4,095
#: rows, or every row below 4,096).
CLASS_BLOCK_ROWS = 2048
#: Most work of one class-block refresh, in loss-gradient passes, for which
#: ``preconditioner="auto"`` prefers class blocks to the Kronecker
#: preconditioner (see :func:`use_class_blocks`). Blocks save 10% to 50% of
#: the iterations (docs/solvers.md), refreshed every ``precondition_every``
#: (20) iterations: above this a refresh costs more than it saves.
CLASS_BLOCK_MAX_REFRESH = 6.0


def use_class_blocks(data: RowData, rank: int) -> bool:
    """Whether ``"auto"`` uses class blocks of ``rank`` where it uses Kronecker.

    A refresh costs ``K m r^2`` multiply-adds for the blocks (``m`` sampled
    rows, ``r = rank + 1`` with the intercept) and about ``4 K r^3`` for their
    two eigendecompositions, against ``K n p`` for a pass. Few rows next to
    the sample or the rank (a 10,000 x 200 set, 5,000 x 500 with 100
    classes) make the refresh cost up to 15 passes while class blocks save a
    few iterations at best; MNIST digits (8,000 x 784): 5 passes a refresh,
    and half the iterations.
    """
    if Capability.SUBSPACE_CURVATURE not in data.capabilities:
        return False
    n, p = data.n_samples, max(1, data.n_features)
    r = min(rank, p) + int(data.fit_intercept)
    m = n // max(1, n // CLASS_BLOCK_ROWS)
    refresh = (m * r * r + 4 * r**3) / max(1, n * p)
    return refresh <= CLASS_BLOCK_MAX_REFRESH


def use_class_scaled(data: RowData) -> bool:
    """Whether ``"auto"`` picks the per-class scaled preconditioner for ``data``.

    Where the Kronecker one would pay (feature covariance, a big pass) but
    there are more than ``KRONECKER_MAX_CLASSES`` classes: then each class's
    own mean and scale matter more than the class factor
    (:func:`softmax.solvers._preconditioners.class_scaled`).
    """
    if Capability.FEATURE_COVARIANCE not in data.capabilities:
        return False
    if data.n_classes <= KRONECKER_MAX_CLASSES:
        return False
    return data.n_samples * data.n_features * data.n_classes >= KRONECKER_WORK


def refresh_due(iteration: int, every: int, first: int) -> bool:
    """Whether to rebuild the preconditioner after ``iteration`` iterations.

    At ``first`` (0: at ``every``), then every ``every`` iterations; never when
    ``every`` is 0.
    """
    if not every:
        return False
    first = first or every
    return iteration >= first and (iteration - first) % every == 0


def default_history(data: RowData) -> int:
    """History size for ``data``: ``HISTORY_SIZE`` for big passes, 30 for small ones.

    The two-loop recursion is ``4 m`` vector operations of Python overhead
    each; when a pass over the rows takes well under a millisecond (digits),
    a long history costs more time than the iterations it saves.
    """
    work = data.n_samples * max(1, data.n_features) * max(1, data.n_classes)
    return HISTORY_SIZE if work >= 10_000_000 else 30
