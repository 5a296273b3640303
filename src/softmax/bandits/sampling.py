r"""Action probabilities and exact categorical sampling.

Boltzmann (softmax) action selection turns action values :math:`Q(a)` into
probabilities

.. math::

    P(a) = \frac{\exp(Q(a)/\tau)}{\sum_b \exp(Q(b)/\tau)},

with temperature :math:`\tau \ge 0`: a high temperature makes all actions
nearly equally likely, a low one concentrates the mass on the best, and
:math:`\tau = 0` is the greedy limit, with the mass split evenly over tied
maxima (so sampling from it breaks ties at random).

The values are shifted by their maximum *before* they are divided by the
temperature: :math:`(Q - \max Q)/\tau \le 0` can only underflow to
``-inf`` (probability 0), never overflow, so huge values and tiny
temperatures are exact and warning-free, and two distinct values never
collapse into a false tie the way ``Q/τ = inf`` would.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax.bandits._checks import Objective, check_objective, check_real, objective_sign
from softmax.bandits._rowops import count_at_most, cumsum_rows, row_max, row_sum

__all__ = ["action_probabilities", "sample_actions"]


def action_probabilities(
    values: ArrayLike,
    temperature: float = 1.0,
    *,
    objective: Objective = "reward",
    axis: int = -1,
) -> NDArray[np.float64]:
    r"""Boltzmann (softmax) probabilities of the actions, stable for any values.

    Parameters
    ----------
    values : array_like of shape (..., n_arms)
        Action values (estimated mean rewards, or mean costs when
        ``objective="cost"``), along ``axis``. Finite or ±inf; NaN is an error.
    temperature : float, default 1.0
        :math:`\tau \ge 0`. ``0`` is the greedy limit: the mass is split
        evenly over the actions tied at the best value.
    objective : {"reward", "cost"}, default "reward"
        ``"reward"``: larger values are better, :math:`P \propto \exp(Q/\tau)`.
        ``"cost"``: smaller values are better, :math:`P \propto \exp(-Q/\tau)`.
    axis : int, default -1
        The axis of the actions.

    Returns
    -------
    ndarray of float64, same shape as ``values``
        Non-negative, summing to 1 along ``axis``. Entries equal to the best
        value ``+inf`` (``-inf`` for costs) share the mass evenly (the limit);
        a slice whose entries are all ``-inf`` is uniform (all tied).

    Raises
    ------
    ValueError
        For a negative or non-finite temperature, an unknown objective, NaN
        values or an empty action axis.

    Examples
    --------
    >>> from softmax.bandits import action_probabilities
    >>> action_probabilities([1.0, 2.0, 3.0], temperature=1.0).round(4)
    array([0.09  , 0.2447, 0.6652])
    >>> action_probabilities([1.0, 3.0, 3.0], temperature=0.0)
    array([0. , 0.5, 0.5])
    >>> action_probabilities([1e308, -1e308], temperature=1e-300)
    array([1., 0.])
    """
    tau = check_real("temperature", temperature, low=0.0)
    sign = objective_sign(check_objective(objective))
    q = np.asarray(values, dtype=np.float64)
    if q.ndim == 0:
        raise ValueError("values must have at least one dimension (the actions).")
    if q.shape[axis] == 0:
        raise ValueError("values has no actions along axis; need at least one.")
    if np.isnan(q).any():
        raise ValueError(
            "values contain NaN; action probabilities would be undefined. "
            "Check the rewards fed to the value estimates."
        )
    prefs = np.moveaxis(q, axis, -1)
    if sign < 0:
        prefs = -prefs
    flat = prefs.reshape(-1, prefs.shape[-1])
    probs = _boltzmann_rows(flat, tau)
    return np.moveaxis(probs.reshape(prefs.shape), -1, axis)


def _boltzmann_rows(prefs: NDArray[np.float64], tau: float) -> NDArray[np.float64]:
    """Row-wise softmax of ``prefs / tau`` for a 2-D float64 array free of NaN.

    The caller's array is never written to.
    """
    from softmax.functions import softmax

    best = row_max(prefs)[:, None]
    if tau == 0.0:
        return argmax_probabilities(prefs, best)
    # Rows whose best value is ±inf are limits: +inf entries share the mass,
    # and a row of all -inf is all tied. Both are the argmax rule.
    finite_best = np.isfinite(best[:, 0])
    all_finite = bool(finite_best.all())
    # (Q - max)/tau <= 0: may underflow to -inf (probability 0) but never
    # overflows to +inf. Subtracting first keeps the difference exact for
    # close values. When the difference itself overflows (-1e308 - 1e308) the
    # result is right for tau <= 1 (the true exponent is even more negative);
    # for tau > 1 those entries are recomputed as Q/tau - max/tau.
    with np.errstate(over="ignore", invalid="ignore"):
        z = prefs - best
        z /= tau
        if tau > 1.0:
            overflowed = np.isneginf(z) & np.isfinite(prefs)
            if overflowed.any():
                rescaled = prefs / tau - best / tau
                z[overflowed] = rescaled[overflowed]
    if not all_finite:
        z[~finite_best] = 0.0
    probs = softmax(z, axis=-1)
    if not all_finite:
        rows = ~finite_best
        probs[rows] = argmax_probabilities(prefs[rows], best[rows])
    return probs


def argmax_probabilities(
    prefs: NDArray[np.float64], best: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Uniform probabilities over each row's maxima (greedy with random tie-breaking).

    Parameters
    ----------
    prefs : ndarray of shape (n_rows, n_arms)
        Preferences, larger is better, no NaN.
    best : ndarray of shape (n_rows, 1), optional
        Row maxima, if already computed.

    Returns
    -------
    ndarray of shape (n_rows, n_arms)
        ``1/m`` on the ``m`` tied maxima of each row, 0 elsewhere.
    """
    if best is None:
        best = row_max(prefs)[:, None]
    ties = prefs == best
    return ties / row_sum(ties)[:, None]


def sample_actions(
    probabilities: ArrayLike,
    random_state: int | np.random.Generator | None = None,
) -> NDArray[np.int64] | int:
    """Draw one action per row from categorical distributions, exactly.

    Inverse-CDF sampling with one uniform per row: the row's cumulative sums
    are divided by their total (so the last one is exactly 1.0 and rounding
    cannot push the draw past the end), and the action is the first index
    whose cumulative probability exceeds the uniform. An action of
    probability 0 is never drawn.

    Parameters
    ----------
    probabilities : array_like of shape (n_rows, n_arms) or (n_arms,)
        Non-negative weights with a positive sum per row (they are
        normalised, so they may be unnormalised weights).
    random_state : int, numpy.random.Generator or None
        Source of the uniforms.

    Returns
    -------
    ndarray of int64 of shape (n_rows,), or int for 1-D input
        The drawn actions.

    Examples
    --------
    >>> from softmax.bandits import sample_actions
    >>> sample_actions([[0.0, 1.0], [1.0, 0.0]], random_state=0)
    array([1, 0])
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim not in (1, 2) or p.shape[-1] == 0:
        raise ValueError(
            f"probabilities must have shape (n_rows, n_arms) or (n_arms,) with n_arms >= 1, "
            f"got shape {p.shape}."
        )
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be finite and non-negative.")
    if (p.sum(axis=-1) <= 0).any():
        raise ValueError("each row of probabilities needs a positive sum.")
    rng = np.random.default_rng(random_state)
    actions = sample_rows(np.atleast_2d(p), rng)
    return int(actions[0]) if p.ndim == 1 else actions


def sample_rows(probs: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.int64]:
    """:func:`sample_actions` without validation, for the simulation loops.

    Parameters
    ----------
    probs : ndarray of shape (n_rows, n_arms)
        Valid (finite, non-negative, positive row sum) weights.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int64 of shape (n_rows,)
    """
    cdf = cumsum_rows(probs)
    # x / x == 1.0 exactly in IEEE arithmetic, so u < 1 always lands inside the
    # row, and a zero-probability arm repeats its neighbour's value and cannot
    # be the first entry above u.
    cdf /= cdf[:, -1:]
    u = rng.random(probs.shape[0])
    return count_at_most(cdf, u)
