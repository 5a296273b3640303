r"""Detection of complete and quasi-complete separation by a linear program.

Albert and Anderson (1984, Biometrika 71:1-10) showed that the multinomial
logit maximum-likelihood estimate exists if and only if the data *overlap*:
there is no direction ``d`` of the coefficients (in the reference-class
parametrisation, ``d_r = 0``) along which every row's log-odds of its own class
against every other class does not decrease,

.. math::

    m_{ik}(d) = (d_{y_i} - d_k) \cdot \tilde x_i \ge 0 \quad
    \text{for all rows } i \text{ and classes } k \ne y_i,

with at least one ``m_{ik} > 0``. Along such a direction the log-likelihood
increases towards its supremum without reaching it: the coefficients run off
to infinity. *Complete* separation is the case where one direction makes every
``m_{ik} > 0``; *quasi-complete* where some rows stay on the boundary.

As in Konis (2007, "Linear programming algorithms for detecting separated
data in binary logistic regression models", DPhil thesis, Oxford) for two
classes, the question is a linear program. Three small ones are solved by
HiGHS through :func:`scipy.optimize.linprog`, on the rows of ``[X, 1]`` with
each column scaled to unit maximum (so that tolerances do not depend on the
units of the features) and duplicate rows dropped:

1. detection: ``max sum m(d)`` s.t. ``m(d) >= 0``, ``|d| <= 1``; the optimum
   is 0 exactly when the data overlap, and margins above ``1e-5`` (a hundred
   times the solver's feasibility tolerance) count as separation;
2. kind: ``max t`` s.t. ``m(d) >= t``, ``|d| <= 1``, ``t <= 1``: complete
   separation when ``t > 0``, quasi-complete otherwise;
3. naming: ``min ||d||_1`` s.t. ``m(d) >= 0`` and, for each class pair
   separated in 1 (every pair under complete separation), the sum of its
   margins ``>= 1``: a sparse separating direction, so the features it uses
   (named in the result) are a small set that separates those pairs on its
   own. Under quasi-complete separation the pairs are those of the direction
   found, not necessarily every separable one.

The programs have ``n (K - 1)`` constraints and ``(K - 1)(p + 1)`` (twice as
many for 3) variables; :func:`lp_size` estimates their size so that callers
can skip them on big data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "AUTO_MAX_NNZ",
    "NEARLY_UNPENALISED",
    "SeparationResult",
    "SeparationWarning",
    "lp_size",
    "separation_lp",
]

#: Automatic checks (after an unpenalised fit, in ``inference``) build a
#: separation program only when its constraint matrix has at most this many
#: non-zeros: a fraction of a second with HiGHS; the time grows much faster
#: than the size, to minutes at a few million. The program is first tried on
#: a subset of the rows (see :func:`separation_lp`), so large data that
#: overlap are still certified when a subset of ``max(1000, 4 K (p + 1))``
#: rows is small enough.
AUTO_MAX_NNZ = 500_000
#: ``SoftmaxRegression.fit`` checks separation when ``C = inf`` or when
#: ``C * sum(sample_weight)`` is at least this: an L2 penalty that weak
#: (below 1e-8 of the loss of an average row per unit squared coefficient)
#: changes nothing but the coefficients along a separating direction, which
#: it alone keeps finite.
NEARLY_UNPENALISED = 1e8

#: Relative tolerance below which a margin or coefficient counts as zero.
_TOL = 1e-7
#: Rows of the first subset the detection program is tried on.
START_ROWS = 1000
#: Smallest margin (columns scaled to unit maximum, direction in the unit box)
#: that counts as separation: well above the solver's feasibility tolerance
#: (1e-7), so that overlapping data never pass for separated through rounding.
_SEPARATED = 1e-5


class SeparationWarning(UserWarning):
    """The data are separated: the maximum-likelihood estimate does not exist."""


@dataclass
class SeparationResult:
    """Outcome of :func:`softmax.inference.check_separation`.

    Attributes
    ----------
    separated : bool
        Whether some direction of the coefficients separates the data (the
        maximum-likelihood estimate does not exist).
    complete : bool
        Complete separation (every row strictly on its side); False for
        quasi-complete separation or none.
    classes : list
        Labels of the classes whose rows the direction separates (the classes
        of the pairs in ``pairs``).
    pairs : list of tuple
        ``(a, b)`` (in ``classes_`` order): the direction puts rows of ``a``
        or of ``b`` strictly on their own side of the boundary between the
        two classes, which no other row crosses.
    features : list of str
        Terms with a non-zero coefficient in the (L1-smallest) separating
        direction; ``"intercept"`` when the intercept takes part.
    direction : ndarray of shape (n_classes - 1, n_terms) or None
        The separating direction in the reference parametrisation (reference
        class ``reference``), scaled to unit maximum; None when not separated.
    reference : object
        The reference class of ``direction``.
    n_rows : int
        Distinct rows (with positive weight) strictly separated by ``direction``.
    """

    separated: bool
    complete: bool = False
    classes: list = field(default_factory=list)
    pairs: list = field(default_factory=list)
    features: list = field(default_factory=list)
    direction: np.ndarray | None = None
    reference: Any = None
    n_rows: int = 0

    def __bool__(self) -> bool:
        return self.separated

    def message(self) -> str:
        """One paragraph that says what is separated and what to do."""
        if not self.separated:
            return "The data overlap: the maximum-likelihood estimate exists."
        kind = "Complete" if self.complete else "Quasi-complete"
        pairs = ", ".join(f"{a!r} | {b!r}" for a, b in self.pairs[:10])
        if len(self.pairs) > 10:
            pairs += f" (and {len(self.pairs) - 10} more pairs)"
        return (
            f"{kind} separation: a linear combination of {self.features} separates "
            f"the class pairs {pairs} ({self.n_rows} distinct rows strictly on their side of "
            "a boundary). The "
            "maximum-likelihood estimate does not exist: along this direction the "
            "likelihood keeps increasing, the coefficients grow without bound as the fit "
            "tightens, and their standard errors are meaningless. Remedies: fit with an "
            "L2 penalty (a finite C) and report the penalised standard errors; drop or "
            "merge the classes or features named; or collect data that overlap."
        )


def _design(X: Any, fit_intercept: bool, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense rows of ``[X, 1]``, each column scaled to maximum absolute value 1.

    The program is only built for data small enough to solve (see
    :func:`lp_size`), so a dense copy is affordable; the scale is returned to
    express the separating direction in the units of ``X``.
    """
    Xr = X[rows]
    dense = Xr.toarray() if sp.issparse(Xr) else np.asarray(Xr, dtype=np.float64)
    if fit_intercept:
        dense = np.hstack([dense, np.ones((dense.shape[0], 1))])
    scale = np.abs(dense).max(axis=0) if dense.shape[0] else np.ones(dense.shape[1])
    scale[scale == 0] = 1.0
    return dense / scale, scale


def lp_size(n_rows: int, n_classes: int, n_terms: int) -> int:
    """Non-zeros of the separation program's constraint matrix (a cost estimate)."""
    return int(n_rows) * (n_classes - 1) * 2 * int(n_terms)


def _constraints(
    dense: np.ndarray, yr: np.ndarray, K: int, reference: int
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Margin matrix ``A`` (``m = A d``) and the (row, class) of each constraint.

    One constraint per row ``i`` and class ``k != y_i``: ``+x_i`` in the block
    of ``y_i``, ``-x_i`` in the block of ``k`` (the reference class has no block:
    its coefficients are zero).
    """
    n, q = dense.shape
    pos = np.full(K, -1)
    pos[[k for k in range(K) if k != reference]] = np.arange(K - 1)
    ii = np.repeat(np.arange(n), K)
    kk = np.tile(np.arange(K), n)
    keep = kk != yr[ii]
    ii, kk = ii[keep], kk[keep]
    parts_r, parts_c, parts_v = [], [], []
    for sign, cls in ((1.0, yr[ii]), (-1.0, kk)):
        use = np.flatnonzero(pos[cls] >= 0)
        parts_r.append(np.repeat(use, q))
        parts_c.append(((pos[cls[use]] * q)[:, None] + np.arange(q)).ravel())
        parts_v.append(sign * dense[ii[use]].ravel())
    A = sp.csr_matrix(
        (np.concatenate(parts_v), (np.concatenate(parts_r), np.concatenate(parts_c))),
        shape=(len(ii), (K - 1) * q),
    )
    A.eliminate_zeros()
    return A, ii, kk


def _detect(A: sp.csr_matrix) -> np.ndarray:
    """Program 1: ``max sum(A d)`` s.t. ``A d >= 0``, ``|d| <= 1``; returns ``d``."""
    from scipy.optimize import linprog

    res = linprog(
        c=-np.asarray(A.sum(axis=0)).ravel(),
        A_ub=-A,
        b_ub=np.zeros(A.shape[0]),
        bounds=(-1, 1),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"The separation linear program failed: {res.message}")
    return res.x


def separation_lp(
    X: Any,
    y: np.ndarray,
    weights: np.ndarray | None,
    classes: np.ndarray,
    reference: int,
    term_names: list[str],
    *,
    fit_intercept: bool,
    max_nnz: int | None = None,
) -> SeparationResult | None:
    """Solve the separation programs for codes ``y`` (see the module docstring).

    Overlap is first sought on a random subset of the rows: rows only add
    constraints, so a subset that overlaps certifies that all the data do.
    The subset starts at ``max(1000, 4 K (p + 1))`` rows and grows fourfold
    while it is separated, up to all the rows. With ``max_nnz``, a program
    larger than that is not built and None (undetermined) is returned.
    """
    from scipy.optimize import linprog

    K = len(classes)
    Kr = K - 1
    q = X.shape[1] + int(fit_intercept)
    rows = np.arange(X.shape[0]) if weights is None else np.flatnonzero(weights > 0)
    order = np.random.default_rng(0).permutation(rows)
    size = min(len(rows), max(START_ROWS, 4 * K * q))
    while True:
        if max_nnz is not None and lp_size(size, K, q) > max_nnz:
            return None
        subset = np.sort(order[:size])
        dense, scale = _design(X, fit_intercept, subset)
        yr = np.asarray(y)[subset]
        # Identical (row, label) pairs give identical constraints: keep one of each.
        _, first = np.unique(np.column_stack([dense, yr]), axis=0, return_index=True)
        first.sort()
        dense, yr = dense[first], yr[first]
        A, ii, kk = _constraints(dense, yr, K, reference)
        d = _detect(A)
        margins = A @ d
        strict = margins > _SEPARATED
        if not strict.any():
            return SeparationResult(False, reference=_py(classes[reference]))
        if size == len(rows):
            break
        size = min(len(rows), 4 * size)
    n_var = Kr * q
    n_con = A.shape[0]
    # 2. Complete separation: every margin strictly positive at once? Then
    #    every pair is separated, also those step 1's vertex left at zero.
    res2 = linprog(
        c=np.r_[np.zeros(n_var), -1.0],
        A_ub=sp.hstack([-A, np.ones((n_con, 1))], format="csr"),
        b_ub=np.zeros(n_con),
        bounds=[(-1, 1)] * n_var + [(None, 1)],
        method="highs",
    )
    complete = bool(res2.status == 0 and -res2.fun > _SEPARATED)
    if complete:
        strict = np.ones(n_con, dtype=bool)
    # 3. The sparsest (L1) direction that separates the same class pairs:
    #    min |d|_1 s.t. A d >= 0 and, for each pair (a, b) found in 1 or 2, the
    #    sum of its margins >= 1 (a sum, not each row: a row near the boundary
    #    would otherwise force large coefficients on features that do not matter).
    #    d = u - v with u, v >= 0.
    con_pair = np.minimum(yr[ii], kk) * K + np.maximum(yr[ii], kk)
    found = np.unique(con_pair[strict])
    in_found = np.isin(con_pair, found)
    pair_rows = sp.csr_matrix(
        (
            np.ones(in_found.sum()),
            (np.searchsorted(found, con_pair[in_found]), np.flatnonzero(in_found)),
        ),
        shape=(len(found), n_con),
    )
    A_uv = sp.hstack([A, -A], format="csr")
    res = linprog(
        c=np.ones(2 * n_var),
        A_ub=sp.vstack([-A_uv, -(pair_rows @ A_uv)], format="csr"),
        b_ub=np.r_[np.zeros(n_con), -np.ones(len(found))],
        bounds=(0, None),
        method="highs",
    )
    if res.status == 0:
        d = res.x[:n_var] - res.x[n_var:]
        d /= np.abs(d).max()
        margins = A @ d
        strict = margins > _TOL
    # (otherwise keep step 1's direction, feasible for step 3 in exact arithmetic)
    D = d.reshape(Kr, q)
    used = np.flatnonzero(np.abs(D).max(axis=0) > _TOL)
    direction = D / scale[None, :]  # back to the units of X
    direction /= np.abs(direction).max()
    con_y, con_k = yr[ii], kk
    # unordered pairs: a row of class a beyond the (a, b) boundary separates a and b
    code_pairs = sorted(
        {tuple(sorted((int(a), int(b)))) for a, b in zip(con_y[strict], con_k[strict])}
    )
    pairs = [(classes[a], classes[b]) for a, b in code_pairs]
    involved = [classes[k] for k in sorted({k for ab in code_pairs for k in ab})]
    n_rows_sep = int(np.unique(ii[strict]).size)
    return SeparationResult(
        True,
        complete=complete,
        classes=[_py(c) for c in involved],
        pairs=[(_py(a), _py(b)) for a, b in pairs],
        features=[term_names[j] for j in used],
        direction=direction,
        reference=_py(classes[reference]),
        n_rows=n_rows_sep,
    )


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
