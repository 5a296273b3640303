"""``partial_fit``'s state between calls: :class:`PartialFitState`.

The estimator owns one (``SoftmaxRegression._partial_fit_state``) and hands
it each call's validated rows; the state never sees the estimator. It keeps
the optimizer's own iterate, the rows seen (:class:`RowIndex`, by digest),
the random generator of the shuffles and the iterate average.

The penalty of ``partial_fit`` is that of ``fit`` on all the distinct rows
passed so far: strength ``1 / (C * W)`` with ``W`` their total weight. A row
passed again (same features, label and weight) is not counted twice,
whatever chunk it comes in, so epochs over a data set, in the same chunks or
reshuffled, target the objective of ``fit`` on it, while a stream of new rows
weakens the penalty as a fit on more rows would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from softmax.penalties import make_penalty
from softmax.solvers.stochastic._batches import (
    Batch,
    RowIndex,
    Scale,
    check_finite,
    minibatch_threads,
    row_digests,
    seed_of,
    set_digest,
)
from softmax.solvers.stochastic._optimizers import (
    DECAY_UPDATES,
    Call,
    Optimizer,
    check_settings,
    resolve_optimizer,
)

__all__ = ["PartialFitState"]


@dataclass
class PartialFitState:
    """What ``partial_fit`` keeps between calls.

    Make one with :meth:`start`; :meth:`step` runs a call.

    Attributes
    ----------
    settings : tuple
        ``(optimizer, learning_rate, batch_size, fit_intercept, n_classes,
        n_features)``: a call with other settings starts a new optimizer
        (:meth:`matches`).
    coef : ndarray of shape (n_classes, n_features + fit_intercept), float64
        The optimizer's iterate (what it steps from).
    optimizer : Optimizer
    rng : numpy.random.Generator
        Shuffles the rows of each call.
    rows : RowIndex
        The distinct rows seen, their count and weight (the penalty's scale).
    average : ndarray or None
        The polynomial-decay average of the iterates, from the first call of
        rows seen before on (not with L1: an average of sparse proximal
        iterates is not sparse); what the estimator publishes when set.
    n_averaged : int
        Updates in the average.
    """

    settings: tuple[Any, ...]
    coef: np.ndarray
    optimizer: Optimizer
    rng: np.random.Generator
    rows: RowIndex
    average: np.ndarray | None = None
    n_averaged: int = 0

    @staticmethod
    def settings_of(
        optimizer: Any,
        learning_rate: Any,
        batch_size: Any,
        fit_intercept: bool,
        n_classes: int,
        n_features: int,
    ) -> tuple[Any, ...]:
        """The settings tuple (callables by identity)."""
        lr = id(learning_rate) if callable(learning_rate) else learning_rate
        return (optimizer, lr, int(batch_size), bool(fit_intercept), n_classes, n_features)

    @classmethod
    def start(
        cls,
        *,
        n_classes: int,
        n_features: int,
        fit_intercept: bool,
        optimizer: str = "auto",
        learning_rate: Any = "auto",
        batch_size: int = 256,
        has_l1: bool = False,
        random_state: Any = None,
        coef0: np.ndarray | None = None,
        seen_rows: int = 0,
        seen_weight: float = 0.0,
    ) -> PartialFitState:
        """A fresh state: zeros, or ``coef0`` (a fitted model: a warm start).

        Parameters
        ----------
        n_classes, n_features, fit_intercept
            The model's shape.
        optimizer, learning_rate, batch_size
            As the estimator's parameters.
        has_l1 : bool
            Whether the penalty has an L1 part (``"auto"`` is then ``"adam"``).
        random_state : int, Generator or None
        coef0 : ndarray of shape (n_classes, n_features + fit_intercept), optional
            The fitted model to continue from: its first steps are shorter
            (:meth:`Optimizer.warm_start`), so they refine it rather than
            shake it.
        seen_rows, seen_weight : int, float
            Rows (and their weight) the fitted model was fitted on, counted
            in the penalty so that it stays that of ``fit``.
        """
        check_settings(optimizer, learning_rate, batch_size)
        shape = (n_classes, n_features + int(fit_intercept))
        coef = np.zeros(shape) if coef0 is None else np.array(coef0, dtype=np.float64)
        rule = resolve_optimizer(optimizer, has_l1).partial_fit
        opt = rule(learning_rate, shape, decay=DECAY_UPDATES)
        rows = RowIndex(n_rows=int(seen_rows), weight=float(seen_weight))
        if coef0 is not None:
            opt.warm_start()
        settings = cls.settings_of(
            optimizer, learning_rate, batch_size, fit_intercept, n_classes, n_features
        )
        return cls(settings, coef, opt, np.random.default_rng(seed_of(random_state)), rows)

    def matches(self, settings: tuple[Any, ...]) -> bool:
        """Whether a call with ``settings`` continues this state's optimizer."""
        return self.settings == settings

    def restart_optimizer(
        self, settings: tuple[Any, ...], optimizer: str, learning_rate: Any, has_l1: bool
    ) -> None:
        """A new optimizer (other settings) from the current iterate; rows kept."""
        check_settings(optimizer, learning_rate, settings[2])
        rule = resolve_optimizer(optimizer, has_l1).partial_fit
        self.optimizer = rule(learning_rate, self.coef.shape, decay=DECAY_UPDATES)
        self.settings = settings
        self.average = None

    def step(
        self,
        X: Any,
        y: np.ndarray,
        weights: np.ndarray | None,
        *,
        C: float,
        l1_ratio: float,
        batch_size: int,
        reference: int | None = None,
        label_smoothing: float = 0.0,
    ) -> np.ndarray:
        """One call: shuffle the rows, make the optimizer's passes of minibatch updates.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_rows, n_features)
            Validated rows, float32 or float64.
        y : ndarray of shape (n_rows,)
            Label codes.
        weights : ndarray of shape (n_rows,) or None
            Row weights ``s_i`` (class weights folded in).
        C, l1_ratio : float
            The penalty (of ``fit`` on the rows seen so far).
        batch_size : int
            Largest number of rows per update: a call of ``n`` rows makes
            ``ceil(n / batch_size)`` updates a pass, on batches of nearly
            equal size.
        reference : int or None, default None
            Code of the reference class, whose row of ``coef`` is held at zero
            (the steps move the other rows only); an iterate that does not
            have that row at zero (a first call, a changed reference) is first
            shifted by it, which leaves its probabilities unchanged.
        label_smoothing : float in [0, 1), default 0.0
            ``eps`` of the smoothed targets of this call's updates.

        Returns
        -------
        ndarray of shape (n_classes, n_features + fit_intercept)
            The coefficients to publish: the average when there is one, else
            the iterate.

        Raises
        ------
        ValueError
            When the weights seen so far sum to zero.
        FloatingPointError
            When an update made the coefficients non-finite.
        """
        n = X.shape[0]
        if n == 0:
            return self.published
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        if w is not None and np.all(w == 1.0):
            w = None  # unit weights: the loss kernels skip the weighting work
        digests = row_digests(X, y, w)
        slots, new = self.rows.add(digests, w)
        if not self.rows.weight > 0:
            raise ValueError("the sample weights seen so far sum to zero; nothing to learn from")
        fi = bool(self.settings[3])
        pen = make_penalty(l1_ratio, fit_intercept=fi, strength=1.0 / (C * self.rows.weight))
        scale = Scale(
            fi,
            self.rows.n_rows,
            self.rows.weight,
            pen.smooth_l2,
            pen.l1_weight,
            fixed_row=reference,
            label_smoothing=float(label_smoothing),
        )
        if reference is not None and np.any(self.coef[reference]):
            self.coef -= self.coef[reference]
            self.average = None
        n_batches = math.ceil(n / int(batch_size))
        call = Call(X, y, w, new, n_batches, set_digest(digests), self.rows.n_slots)
        opt = self.optimizer
        # one BLAS thread for the small products of a call, the preconditioner's
        # eigendecomposition included (several threads on a busy machine: 8x slower)
        work = (min(n, int(batch_size)), X.shape[1], self.coef.shape[0])
        with minibatch_threads(*work):
            passes = opt.begin_call(self.coef, call, scale)
        if pen.l1_weight > 0:
            self.average = None  # l1_ratio may have been raised since the last call
        elif call.known and self.average is None:
            # rows seen before: from here on the published coefficients are
            # an average of the iterates (see AVERAGE_ETA)
            self.average = np.array(self.coef)
            self.n_averaged = 0
        eta = opt.average_eta
        with minibatch_threads(*work):
            for _ in range(passes):
                for idx in np.array_split(self.rng.permutation(n), n_batches):
                    idx.sort()  # sorted gather reads memory front to back
                    batch = Batch(X[idx], y[idx], None if w is None else w[idx], slots[idx])
                    loss = opt.update(self.coef, batch, scale)
                    check_finite(loss, self.coef, opt.t)
                    if self.average is not None:
                        self.n_averaged += 1
                        k = self.n_averaged
                        self.average += ((eta + 1.0) / (k + eta)) * (self.coef - self.average)
        opt.end_call(self.coef)
        return self.published

    @property
    def published(self) -> np.ndarray:
        """The average when there is one, else the iterate."""
        return self.coef if self.average is None else self.average
