"""The update rules of the stochastic solvers, behind one interface.

An :class:`Optimizer` turns minibatches into steps on ``coef`` (in place):
``update(coef, batch, scale)``, ``rate()`` (the step size of the next
update), ``state()`` / ``load()`` (checkpoints). The two drivers call only
that interface and its hooks, never an optimizer's name:

- ``solver="sgd"`` (:class:`softmax.solvers.stochastic.SGD`): epochs of
  minibatches from the backend; :meth:`Optimizer.start_fit` and
  :meth:`Optimizer.end_epoch` around them;
- ``partial_fit`` (:class:`softmax.solvers.stochastic.PartialFitState`):
  one call's rows at a time; :meth:`Optimizer.begin_call` /
  :meth:`Optimizer.end_call` around them.

First-order rules (:class:`PlainSGD`, :class:`AdaGrad`, :class:`Adam`) step
along the minibatch gradient with per-coordinate step sizes, and handle an
L1 term by a proximal (soft-thresholding) step with those step sizes.
:class:`VarianceReduced` (``"vr"``) steps along a variance-reduced gradient
estimate preconditioned by a damped Kronecker-factored inverse Hessian (see
``docs/streaming.md`` for what each piece bought, measured):

- **estimate**: SVRG (Johnson & Zhang, 2013), ``G_B(coef) - G_B(anchor) +
  G(anchor)``, whose variance vanishes at the optimum. ``fit`` anchors each
  epoch at the exact gradient its stopping test computes
  (:class:`ExactAnchor`); ``partial_fit`` cannot make a pass of its own, so
  it accumulates the gradient at an anchor point from the rows as they
  arrive and uses it once every known row has been seen (:class:`PassAnchor`).
  One anchor for all rows, rather than SAGA's memory of each row's last
  gradient, keeps the steps stable whatever the order of the chunks (see
  ``docs/streaming.md``, "Why partial_fit diverged").
- **step**: ``coef -= rate * M g`` with ``M`` the damped Kronecker inverse
  Hessian (:func:`softmax.solvers._preconditioners.damped_kronecker`) and
  ``rate = VR_STEP / lambda_max(M H_B)``, the largest eigenvalue of
  the preconditioned minibatch Hessian (power iteration), scaled down for
  batches smaller than the one it was measured on.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import scipy.sparse as sp

from softmax.backends._base import Capability, check_batch_size
from softmax.linear_loss import block_hessp, block_loss_gradient
from softmax.solvers._preconditioners import VR_FULL_MAX_FEATURES, Kronecker, damped_kronecker
from softmax.solvers.stochastic._batches import (
    Batch,
    FeatureStats,
    Scale,
    batch_residuals,
    residual_gradient,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AdaGrad",
    "Adam",
    "Call",
    "ExactAnchor",
    "Optimizer",
    "PassAnchor",
    "PlainSGD",
    "Rules",
    "VarianceReduced",
    "check_settings",
    "resolve_optimizer",
]

SCHEDULES = ("auto", "constant", "invscaling")
#: partial_fit from a fitted model starts "invscaling" this many decay periods
#: in (step divided by sqrt(1 + WARM_START_DECAYS)).
WARM_START_DECAYS = 30
#: T of "invscaling" (lr0 / sqrt(1 + t / T)) in partial_fit, which cannot know
#: the epoch length; fit(solver="sgd") uses T = one epoch of updates.
DECAY_UPDATES = 100.0
#: From its second pass over the same rows on, partial_fit returns the
#: polynomial-decay average of its iterates (Shamir & Zhang, 2013), avg +=
#: (eta + 1) / (k + eta) * (coef - avg) at update k: weights growing as
#: k**eta, so the average forgets the early iterates of the second pass but
#: smooths the noise. Measured with Adam on MNIST (8,000 rows, chunks of
#: 500): 20 epochs 19% -> 12% above the optimum of the training objective;
#: eta = 3: 13%, eta = 0: 21%.
AVERAGE_ETA = 8.0
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8

#: "vr": power iterations for lambda_max(M H_B). Their accuracy is part of
#: the step size: 3 iterations underestimated lambda on MNIST enough to leave
#: partial_fit 10% above the optimum after 25 epochs (0.8% with 10).
VR_POWER_ITERATIONS = 10
#: "vr": the step is VR_STEP / lambda_max(M H_B): the full step of the
#: preconditioner's Newton model for the stiffest direction of the batch.
#: fit (MNIST, SVRG over shuffled minibatches): within 0.5% of the optimum in
#: 30 epochs. partial_fit, digits / 16 in 14 chunkings (in file order or
#: reshuffled, 50 to 1,000 rows), random_state 0 to 3: all within 0.16% after
#: 20 epochs; 0.85: within 0.12%, but MNIST in chunks of 500 0.93% (1.0:
#: 0.70%) after 20 epochs.
VR_STEP = 1.0
#: "vr": steps on rows no anchor covers (partial_fit's first pass, new
#: rows) use the plain minibatch gradient and are this much shorter (noisier;
#: MNIST one-epoch accuracy 1.0 -> 0.88, 0.7 -> 0.89).
VR_FIRST_VISIT_FACTOR = 0.7
#: "vr" partial_fit from a fitted model: those plain steps are this much
#: shorter still, so they do not throw away what fit found.
VR_WARM_START_SCALE = 0.5
#: "vr" in partial_fit: a second pass of steps over a call's rows (once the
#: rows are known) when its batches have at least this many rows. Measured
#: after 20 epochs: never -> digits / 16 grid (50 to 1,000-row chunks) up to
#: 0.49% and MNIST in chunks of 500 2.5% above the optimum; always -> digits
#: in 50-row chunks drifted off (34%): the lagged anchor feeds a small
#: batch's deviation from the mean Hessian back pass after pass, more so the
#: more steps a pass makes; from 100 rows -> grid within 0.12%, MNIST 0.70%.
VR_INNER_MIN_ROWS = 100
#: "vr" in partial_fit rebuilds its preconditioner (an eigendecomposition of
#: the p x p second moment, ~60 ms at p = 784) when the weight of the rows
#: seen has grown this much, and once more when the rows start to repeat
#: (the data set is complete). Before: 16-fold, so a data set of fewer than
#: 16 chunks kept the preconditioner of its first chunk forever.
VR_REBUILD_GROWTH = 4.0

Schedule = Callable[[int], float]


def _is_rate_value(lr: Any) -> bool:
    return (
        not isinstance(lr, bool)
        and isinstance(lr, (int, float, np.integer, np.floating))
        and lr > 0
        and math.isfinite(lr)
    )


def check_settings(optimizer: Any, learning_rate: Any, batch_size: Any) -> None:
    """Validate the stochastic solver's parameters (names in the messages are the estimator's)."""
    if optimizer not in OPTIMIZERS and optimizer != "auto":
        raise ValueError(f"optimizer must be one of {('auto', *OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(learning_rate, str):
        if learning_rate not in SCHEDULES:
            raise ValueError(
                f"learning_rate must be a positive float, a callable or one of {SCHEDULES}, "
                f"got {learning_rate!r}"
            )
    elif not callable(learning_rate) and not _is_rate_value(learning_rate):
        raise ValueError(
            f"learning_rate must be a positive finite float, a callable or one of {SCHEDULES}, "
            f"got {learning_rate!r}"
        )
    check_batch_size(batch_size)


class Rules(NamedTuple):
    """An optimizer as each driver runs it (the same class for most)."""

    fit: type[Optimizer]  # solver="sgd": epochs over the backend's minibatches
    partial_fit: type[Optimizer]  # partial_fit: one call's rows at a time


def resolve_optimizer(name: str, has_l1: bool) -> Rules:
    """The rules for ``name``: ``"auto"`` is ``"vr"``, or ``"adam"`` with an L1 term."""
    if name == "auto":
        name = "adam" if has_l1 else "vr"
    rules = OPTIMIZERS[name]
    if has_l1 and not rules.fit.supports_l1:
        raise ValueError(
            f"optimizer={name!r} needs l1_ratio=0 (its preconditioned steps have no simple "
            "L1 proximal step); use optimizer='auto' or 'adam' with l1_ratio > 0"
        )
    return rules


@dataclass
class Call:
    """One ``partial_fit`` call as the optimizer sees it.

    Attributes
    ----------
    X, y, w
        The call's rows, label codes and weights (None: ones).
    new : ndarray of shape (n_rows,), bool
        Rows not seen in earlier calls.
    n_batches : int
        Minibatches the call's rows are cut into (per pass).
    digest : int
        Of the call's set of rows: equal for a chunk passed again.
    n_slots : int
        Distinct rows remembered so far, this call's included.
    """

    X: Any
    y: np.ndarray
    w: np.ndarray | None
    new: np.ndarray
    n_batches: int
    digest: int
    n_slots: int

    @property
    def batch_rows(self) -> int:
        return math.ceil(self.X.shape[0] / self.n_batches)

    @property
    def known(self) -> bool:
        """Whether every row was seen in earlier calls."""
        return not bool(self.new.any())


class Optimizer(ABC):
    """An update rule of the stochastic solvers.

    Parameters
    ----------
    learning_rate : "auto", "constant", "invscaling", float or callable
        See ``docs/streaming.md``; callables get the update count ``t``.
    shape : tuple of int
        ``(n_classes, n_features + fit_intercept)``.
    decay : float
        ``T`` of ``"invscaling"``, in updates.
    """

    #: whether the rule handles an L1 term (by a proximal step)
    supports_l1: ClassVar[bool] = True
    #: weight exponent of partial_fit's iterate average (see AVERAGE_ETA)
    average_eta: ClassVar[float] = AVERAGE_ETA
    #: what learning_rate="auto" means for this rule
    auto_schedule: ClassVar[str] = "invscaling"

    def __init__(self, learning_rate: Any, shape: tuple[int, int], *, decay: float) -> None:
        self.learning_rate = learning_rate
        self.shape = shape
        self.decay = float(decay)
        self.t = 0  # updates made
        self.t_offset = 0  # the schedule starts this many updates in (warm starts)

    def _scheduled(self, base: float) -> float:
        """The step of the next update from ``base`` (``lr0``) and the schedule."""
        lr = self.learning_rate
        if callable(lr) and not isinstance(lr, str):
            out = float(lr(self.t))
            if not (out > 0 and math.isfinite(out)):
                raise ValueError(f"learning_rate({self.t}) returned {out!r}; it must be > 0")
            return out
        if not isinstance(lr, str):
            return float(lr)
        schedule = self.auto_schedule if lr == "auto" else lr
        if schedule == "invscaling":
            return base / math.sqrt(1.0 + (self.t + self.t_offset) / self.decay)
        return base

    @abstractmethod
    def rate(self) -> float:
        """Step size of the next update (NaN until a first batch has set its scale)."""

    @abstractmethod
    def update(self, coef: np.ndarray, batch: Batch, scale: Scale) -> float:
        """One step on ``coef`` (in place) from ``batch``.

        Returns
        -------
        float
            The batch's summed weighted loss at ``coef`` before the step.
        """

    def state(self) -> dict[str, np.ndarray]:
        """What a checkpoint must hold to resume this rule."""
        return {"t": np.int64(self.t), "t_offset": np.int64(self.t_offset)}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        """Resume from :meth:`state`'s arrays."""
        self.t = int(state["t"])
        self.t_offset = int(state.get("t_offset", 0))

    # -- hooks of the two drivers (no-ops unless a rule needs them) ------------

    def start_fit(self, objective: Any, coef: np.ndarray, batch_rows: int) -> None:  # noqa: B027
        """``solver="sgd"``: before the first epoch (and after a resume); no-op by default."""

    def end_epoch(self, objective: Any, coef: np.ndarray) -> float:
        """``solver="sgd"``: the exact objective ``f`` at the end of an epoch (one pass)."""
        return objective.smooth_value(coef) + objective.nonsmooth(coef)

    def begin_call(self, coef: np.ndarray, call: Call, scale: Scale) -> int:
        """``partial_fit``: before a call's updates at ``coef``; returns the passes to make."""
        return 1

    def end_call(self, coef: np.ndarray) -> None:  # noqa: B027
        """``partial_fit``: after a call's updates; no-op by default."""

    def warm_start(self) -> None:
        """``partial_fit`` continuing a fitted model: make the first steps short."""
        self.t_offset = int(WARM_START_DECAYS * DECAY_UPDATES)


# --------------------------------------------------------------------------- first order


def _mean_row_norm(X: Any, fit_intercept: bool, norm: str) -> float:
    """Mean L1 norm, or mean squared L2 norm, of the rows of ``X`` with the intercept 1."""
    if sp.issparse(X):
        v = abs(X).sum(axis=1) if norm == "l1" else X.multiply(X).sum(axis=1)
        v = np.asarray(v, dtype=np.float64).ravel()
    else:
        v = (
            np.abs(X).sum(axis=1, dtype=np.float64)
            if norm == "l1"
            else np.einsum("ij,ij->i", X, X, dtype=np.float64)
        )
    return float(v.mean()) + (1.0 if fit_intercept else 0.0)


class FirstOrder(Optimizer):
    """Steps along the minibatch gradient with per-coordinate step sizes; L1 by prox.

    ``lr0`` is set on the first minibatch so that one update changes a logit
    by a few units whatever the feature scale: ``lr_scale / mean ||x~||``
    in the norm ``lr_norm`` (``x~`` the row with its intercept 1).
    """

    lr_scale: ClassVar[float]
    lr_norm: ClassVar[str] = "l1"

    def __init__(self, learning_rate: Any, shape: tuple[int, int], *, decay: float) -> None:
        super().__init__(learning_rate, shape, decay=decay)
        self.lr0 = math.nan

    def rate(self) -> float:
        return self._scheduled(self.lr0)

    @abstractmethod
    def _step(self, grad: np.ndarray, lr: float) -> tuple[np.ndarray, Any]:
        """``(delta, step)``: the update ``coef -= delta`` and the step size(s) it used."""

    def update(self, coef: np.ndarray, batch: Batch, scale: Scale) -> float:
        fi = scale.fit_intercept
        loss, grad = block_loss_gradient(
            coef, batch.X, batch.y, batch.w, fit_intercept=fi,
            label_smoothing=scale.label_smoothing,
        )  # fmt: skip
        grad *= 1.0 / (batch.n_rows * scale.mean_weight)
        scale.complete(coef, grad)
        if math.isnan(self.lr0):
            self.lr0 = self.lr_scale / max(_mean_row_norm(batch.X, fi, self.lr_norm), 1e-12)
        lr = self.rate()
        self.t += 1
        with np.errstate(over="ignore", invalid="ignore"):
            delta, step = self._step(grad, lr)
            coef -= delta
            if scale.l1 > 0:
                p = coef.shape[1] - int(fi)
                w = coef[:, :p]
                thr = scale.l1 * (step if np.ndim(step) == 0 else step[:, :p])
                # soft thresholding: the prox of the (diagonally scaled) L1 norm
                np.copyto(w, np.sign(w) * np.maximum(np.abs(w) - thr, 0.0))
        return loss

    def state(self) -> dict[str, np.ndarray]:
        return {**super().state(), "lr0": np.float64(self.lr0)}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        super().load(state)
        self.lr0 = float(state["lr0"])


class PlainSGD(FirstOrder):
    """Plain stochastic gradient steps (``optimizer="sgd"``).

    ``lr0 = 30 / mean ||x~||^2``: the worst-case curvature bound
    ``||x~||^2 / 2`` is far from the real curvature of softmax rows
    (probabilities saturate), and steps this size were the fastest stable
    ones on MNIST and the digits.
    """

    lr_scale: ClassVar[float] = 30.0
    lr_norm: ClassVar[str] = "l2"

    def _step(self, grad: np.ndarray, lr: float) -> tuple[np.ndarray, Any]:
        return lr * grad, lr


class AdaGrad(FirstOrder):
    """Per-coordinate steps ``lr / sqrt(sum of squared gradients)`` (Duchi et al., 2011)."""

    lr_scale: ClassVar[float] = 10.0
    auto_schedule: ClassVar[str] = "constant"  # its steps shrink by themselves

    def __init__(self, learning_rate: Any, shape: tuple[int, int], *, decay: float) -> None:
        super().__init__(learning_rate, shape, decay=decay)
        self.v = np.zeros(shape)

    def _step(self, grad: np.ndarray, lr: float) -> tuple[np.ndarray, Any]:
        self.v += grad * grad
        step = np.sqrt(self.v)
        step += _EPS
        np.divide(lr, step, out=step)
        return step * grad, step

    def state(self) -> dict[str, np.ndarray]:
        return {**super().state(), "v": self.v}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        super().load(state)
        self.v = np.array(state["v"])


class Adam(FirstOrder):
    """Adam (Kingma & Ba, 2015): ``beta1 = 0.9``, ``beta2 = 0.999``, ``eps = 1e-8``."""

    lr_scale: ClassVar[float] = 3.0

    def __init__(self, learning_rate: Any, shape: tuple[int, int], *, decay: float) -> None:
        super().__init__(learning_rate, shape, decay=decay)
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)

    def _step(self, grad: np.ndarray, lr: float) -> tuple[np.ndarray, Any]:
        t = self.t  # already counts this update
        self.m *= _BETA1
        self.m += (1 - _BETA1) * grad
        self.v *= _BETA2
        self.v += (1 - _BETA2) * grad * grad
        # per-coordinate step lr / (sqrt(v_hat) + eps), with bias corrections
        step = np.sqrt(self.v / (1 - _BETA2**t))
        step += _EPS
        np.divide(lr / (1 - _BETA1**t), step, out=step)
        return step * self.m, step

    def state(self) -> dict[str, np.ndarray]:
        return {**super().state(), "m": self.m, "v": self.v}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        super().load(state)
        self.m = np.array(state["m"])
        self.v = np.array(state["v"])


# --------------------------------------------------------------------------- variance reduced


@dataclass
class Anchor:
    """The SVRG anchor: a point and the mean data-term gradient of ``f`` there.

    ``grad`` is ``sum_i s_i grad CE_i(coef) / sum_i s_i`` over the anchor's
    rows, whose mean weight is ``mean_weight``; rows in slots below
    ``n_slots`` (``partial_fit``) are the anchor's.
    """

    coef: np.ndarray
    grad: np.ndarray
    mean_weight: float
    n_slots: int = 0


def _top_curvature(
    pre: Kronecker,
    coef: np.ndarray,
    batch: Batch,
    scale: Scale,
    v: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Largest eigenvalue of ``M H_B`` by power iteration from ``v`` (``H_B``: batch Hessian of f).

    Sets the step of ``"vr"``: the preconditioner has the Hessian's shape,
    this measures how far a minibatch's curvature overshoots it. Returns the
    eigenvalue and the last iterate (to start the next measurement from).
    """
    _, _, hessp = block_hessp(coef, batch.X, batch.y, batch.w, fit_intercept=scale.fit_intercept)
    s = 1.0 / (batch.n_rows * scale.mean_weight)
    lam = 1.0
    for _ in range(VR_POWER_ITERATIONS):
        v = v / np.linalg.norm(v)
        Hv = hessp(v)
        Hv *= s
        scale.complete(v, Hv)
        u = pre.apply(Hv)
        lam = float(np.linalg.norm(u))
        if not (lam > 0 and math.isfinite(lam)):
            return 1.0, np.random.default_rng(0).standard_normal(coef.shape)
        v = u
    # Never a step longer than the preconditioner's full Newton step: a batch
    # whose rows are fitted already (little curvature) would otherwise set a
    # step its anchor's full gradient overshoots. (In the symmetric penalised
    # form the penalty alone holds the all-ones class direction at exactly 1.)
    return max(lam, 1.0), v


class VarianceReduced(Optimizer):
    """Preconditioned SVRG steps ``coef -= rate * M (G_B(coef) - G_B(a) + G(a) + l2 W)``.

    The ``"vr"`` optimizer (module docstring): ``fit`` runs it with an exact
    anchor every epoch (:class:`ExactAnchor`), ``partial_fit`` with anchors
    gathered over passes of calls (:class:`PassAnchor`). Without an anchor
    for a batch's rows it steps along the plain minibatch gradient, shorter.
    """

    supports_l1: ClassVar[bool] = False
    auto_schedule: ClassVar[str] = "constant"

    def __init__(self, learning_rate: Any, shape: tuple[int, int], *, decay: float) -> None:
        super().__init__(learning_rate, shape, decay=decay)
        self.pre: Kronecker | None = None
        self.lam = math.nan  # lambda_max(M H_B) at the last measurement
        self.lam_rows = 1  # rows of the batch it was measured on
        self.anchor: Anchor | None = None
        self.plain_scale = VR_FIRST_VISIT_FACTOR  # of the steps without an anchor
        self.passes = 0  # anchors completed (partial_fit)
        # a fixed start for the power iteration: the step (and the fit) must
        # not depend on where the caller's generator is
        self._v = np.random.default_rng(0).standard_normal(shape)

    def rate(self) -> float:
        return self._scheduled(VR_STEP / self.lam)

    def measure(self, coef: np.ndarray, batch: Batch, scale: Scale) -> float:
        """``lambda_max(M H_B)`` on ``batch`` (power iteration from the last vector)."""
        assert self.pre is not None
        lam, self._v = _top_curvature(self.pre, coef, batch, scale, self._v)
        return lam

    def _batch_rate(self, coef: np.ndarray, batch: Batch, scale: Scale) -> float:
        """The step for this batch: :meth:`rate`, shorter for batches smaller than measured."""
        if math.isnan(self.lam):
            self.lam = self.measure(coef, batch, scale)
            self.lam_rows = batch.n_rows
        return self.rate() * min(1.0, batch.n_rows / self.lam_rows)

    def _anchor_for(self, batch: Batch) -> Anchor | None:
        """The anchor whose gradient covers the batch's rows, or None."""
        return self.anchor

    def update(self, coef: np.ndarray, batch: Batch, scale: Scale) -> float:
        assert self.pre is not None
        fi = scale.fit_intercept
        lr = self._batch_rate(coef, batch, scale)
        loss, R = batch_residuals(coef, batch, fi, scale.label_smoothing)
        anchor = self._anchor_for(batch)
        if anchor is not None:
            R -= batch_residuals(anchor.coef, batch, fi, scale.label_smoothing)[1]
            G = residual_gradient(R, batch.X, fi)
            G *= 1.0 / (batch.n_rows * anchor.mean_weight)
            G += anchor.grad
        else:  # no anchor covers these rows: a plain (noisier, shorter) step
            G = residual_gradient(R, batch.X, fi)
            G *= 1.0 / (batch.n_rows * scale.mean_weight)
            lr *= self.plain_scale
        scale.complete(coef, G)
        self.t += 1
        coef -= lr * self.pre.apply(G)
        return loss

    def state(self) -> dict[str, np.ndarray]:
        out = {**super().state(), "lam": np.float64(self.lam), "lam_rows": np.int64(self.lam_rows)}
        if self.anchor is not None:
            out["anchor"] = self.anchor.coef
            out["anchor_grad"] = self.anchor.grad
            out["anchor_mean_weight"] = np.float64(self.anchor.mean_weight)
        return out

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        super().load(state)
        self.lam = float(state["lam"])
        self.lam_rows = int(state.get("lam_rows", 1))


class ExactAnchor(VarianceReduced):
    """``"vr"`` in ``fit``: SVRG anchored at the exact gradient of every epoch's end.

    The preconditioner comes from the backend's feature moments (the full
    covariance when it offers one and ``n_features <= VR_FULL_MAX_FEATURES``,
    the diagonal otherwise, unit scales without either), once.
    """

    def start_fit(self, objective: Any, coef: np.ndarray, batch_rows: int) -> None:
        data = objective.data
        K, q = data.coef_shape
        fi = bool(data.fit_intercept)
        p = q - int(fi)
        if Capability.FEATURE_COVARIANCE in data.capabilities and p <= VR_FULL_MAX_FEATURES:
            mean, second = (np.asarray(a, dtype=np.float64) for a in data.feature_covariance())
            if not fi:
                second = second + np.outer(mean, mean)
        elif Capability.FEATURE_MOMENTS in data.capabilities:
            mean, sq = (np.asarray(a, dtype=np.float64) for a in data.feature_moments())
            second = sq - mean * mean if fi else sq
        else:  # a backend without moments: unit feature scales
            mean, second = np.zeros(p), np.ones(p)
        self.pre = damped_kronecker(
            mean, second, K, objective.penalty.smooth_l2, batch_rows, fi,
            fixed=objective.fixed_row,
        )  # fmt: skip
        if self.anchor is None:
            # the anchor's exact gradient at the start (later, at each epoch's end)
            self.end_epoch(objective, coef)

    def end_epoch(self, objective: Any, coef: np.ndarray) -> float:
        # the exact gradient here is the next epoch's anchor: one pass for both
        f, g = objective.smooth(coef)
        l2 = objective.penalty.smooth_l2
        p = coef.shape[1] - int(objective.data.fit_intercept)
        g[:, :p] -= l2 * coef[:, :p]  # the data term's gradient alone
        data = objective.data
        self.anchor = Anchor(np.array(coef), g, float(data.weight_sum) / data.n_samples)
        return f + objective.nonsmooth(coef)

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        if "anchor" in state:
            self.anchor = Anchor(
                np.array(state["anchor"]),
                np.array(state["anchor_grad"]),
                float(state["anchor_mean_weight"]),
            )
        super().load(state)


class PassAnchor(VarianceReduced):
    """``"vr"`` in ``partial_fit``: SVRG with anchors gathered over passes of calls.

    From the first call that brings back rows seen before, the rows'
    gradient at a fixed point (the *next* anchor) is gathered as each known
    row arrives; once every known row has been seen since, that sum is exact
    and the point becomes the anchor of the steps that follow (one pass
    old), while the next one starts. Rows first seen later are not the
    anchor's until its successor: their batches take plain steps. A stream
    of rows that never come back gathers nothing (no extra work).

    The preconditioner is rebuilt from the rows seen (:class:`FeatureStats`)
    when their weight has grown ``VR_REBUILD_GROWTH``-fold and when they
    start to repeat; ``lambda_max`` is measured on the first batch after each
    build and, for a chunk that comes back as one identical batch, on that
    batch (its own stability limit, kept until the next build).
    """

    def __init__(self, learning_rate: Any, shape: tuple[int, int], *, decay: float) -> None:
        super().__init__(learning_rate, shape, decay=decay)
        self.stats: FeatureStats | None = None  # of the rows seen, from the first call
        self.built_at = 0.0  # stats weight at the last build
        self.chunks: set[int] = set()  # digests of the single-batch calls seen
        self.chunk_lam: dict[int, tuple[float, int]] = {}  # digest -> (lambda, rows)
        self.call: Call | None = None
        # the anchor being gathered: its point, gradient sum and rows
        self.next_coef: np.ndarray | None = None
        self.next_sum = np.zeros(shape)
        self.next_weight = 0.0
        self.next_rows = 0
        self.visited = np.zeros(0, bool)  # by slot: gathered since next_coef was set
        self.n_visited = 0

    def warm_start(self) -> None:
        self.plain_scale *= VR_WARM_START_SCALE

    def begin_call(self, coef: np.ndarray, call: Call, scale: Scale) -> int:
        self.call = call
        fi = scale.fit_intercept
        if self.stats is None:
            p = call.X.shape[1]
            self.stats = FeatureStats(p, full=p <= VR_FULL_MAX_FEATURES)
        if call.new.any():
            self.stats.add(call.X[call.new], None if call.w is None else call.w[call.new])
        grown = self.stats.weight >= VR_REBUILD_GROWTH * self.built_at
        complete = call.known and self.stats.weight > self.built_at
        if self.pre is None or grown or complete:
            mean, second = self.stats.moments(centred=fi)
            sample = self.stats.sample()
            self.pre = damped_kronecker(
                mean,
                None if sample is not None else second,
                self.shape[0],
                scale.l2,
                call.batch_rows,
                fi,
                sample=sample,
                fixed=scale.fixed_row,
            )
            self.built_at = self.stats.weight
            self.lam = math.nan
            self.chunk_lam.clear()
        if call.n_batches == 1:
            if call.digest in self.chunks and call.digest not in self.chunk_lam:
                self.chunk_lam[call.digest] = (math.nan, call.X.shape[0])
            self.chunks.add(call.digest)
        if call.known and self.next_coef is None:
            self._restart(coef)  # the rows repeat: gather the first anchor from here
        return 2 if call.known and call.batch_rows >= VR_INNER_MIN_ROWS else 1

    def _batch_rate(self, coef: np.ndarray, batch: Batch, scale: Scale) -> float:
        own = None if self.call is None else self.chunk_lam.get(self.call.digest)
        if own is None:
            return super()._batch_rate(coef, batch, scale)
        lam, rows = own
        if math.isnan(lam):
            lam = self.measure(coef, batch, scale)
            self.chunk_lam[self.call.digest] = (lam, batch.n_rows)  # type: ignore[union-attr]
        rate = self._scheduled(VR_STEP / lam)
        return rate * min(1.0, batch.n_rows / rows)

    def _anchor_for(self, batch: Batch) -> Anchor | None:
        a = self.anchor
        if a is None or batch.slots is None:
            return None
        # the anchor's rows only (slots below its n_slots): otherwise plain steps
        return a if bool(np.all((batch.slots >= 0) & (batch.slots < a.n_slots))) else None

    def update(self, coef: np.ndarray, batch: Batch, scale: Scale) -> float:
        self._gather(batch, scale)
        return super().update(coef, batch, scale)

    def _restart(self, coef: np.ndarray) -> None:
        """Start gathering the next anchor's gradient at ``coef``."""
        self.next_coef = np.array(coef)
        self.next_sum = np.zeros(self.shape)
        self.next_weight = 0.0
        self.next_rows = 0
        self.visited[:] = False
        self.n_visited = 0

    def _gather(self, batch: Batch, scale: Scale) -> None:
        """Add the gradient at the next anchor of the batch's rows not gathered yet."""
        if self.next_coef is None or batch.slots is None:
            return
        slots = batch.slots
        top = int(slots.max(initial=-1))
        if self.visited.size <= top:
            grown = np.zeros(max(2 * self.visited.size, top + 1), bool)
            grown[: self.visited.size] = self.visited
            self.visited = grown
        fresh = slots >= 0
        fresh[fresh] = ~self.visited[slots[fresh]]
        if not fresh.any():
            return
        sub = (
            batch
            if fresh.all()
            else Batch(batch.X[fresh], batch.y[fresh], None if batch.w is None else batch.w[fresh])
        )
        _, R = batch_residuals(self.next_coef, sub, scale.fit_intercept, scale.label_smoothing)
        self.next_sum += residual_gradient(R, sub.X, scale.fit_intercept)
        self.next_weight += sub.weight
        self.next_rows += sub.n_rows
        newly = np.unique(slots[fresh])
        self.visited[newly] = True
        self.n_visited += int(newly.size)

    def end_call(self, coef: np.ndarray) -> None:
        call = self.call
        if self.next_coef is None or call is None:
            return
        if self.n_visited >= call.n_slots > 0:
            # every known row since the point was set: its gradient is exact
            self.anchor = Anchor(
                self.next_coef,
                self.next_sum / max(self.next_weight, 1e-300),
                self.next_weight / max(self.next_rows, 1),
                n_slots=call.n_slots,
            )
            self.passes += 1
            self._restart(coef)


#: optimizer name -> its rules; "auto" is resolved by :func:`resolve_optimizer`
OPTIMIZERS: dict[str, Rules] = {
    "vr": Rules(ExactAnchor, PassAnchor),
    "adam": Rules(Adam, Adam),
    "adagrad": Rules(AdaGrad, AdaGrad),
    "sgd": Rules(PlainSGD, PlainSGD),
}
