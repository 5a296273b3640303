"""Stochastic solver: minibatch updates on the true multinomial loss.

``solver="sgd"`` and :meth:`softmax.SoftmaxRegression.partial_fit` minimise
the same objective as every other solver,

.. math::

    F(W, b) = C \\sum_i s_i \\, CE_i + \\tfrac{1 - \\rho}{2} \\lVert W \\rVert_F^2
              + \\rho \\lVert W \\rVert_1 ,

through its rescaled form ``f = F / (C S)`` (``S = sum_i s_i``): a weighted
mean of the per-row losses plus ``r(W) / (C S)``. A minibatch ``B`` gives the
unbiased gradient estimate

.. math::

    g = \\frac{1}{|B| \\bar s} \\sum_{i \\in B} s_i \\nabla CE_i
        + \\frac{1 - \\rho}{C S} W, \\qquad \\bar s = S / n ,

(the intercept is not penalised) followed by an update of the chosen
``optimizer`` and, when ``rho > 0`` (adam, adagrad, sgd), a proximal
(soft-thresholding) step for the L1 part with the same per-coordinate step
sizes, so that coefficients become exactly zero as in the batch L1 solver.

The default: preconditioned variance reduction ("vr")
-----------------------------------------------------
First-order steps stall on ill-conditioned data such as MNIST pixels
(correlated features, some that few rows touch): Adam with iterate averaging
ended 12% above the optimum of the training objective after 20 epochs of
``partial_fit``, and plain minibatch noise keeps any constant-step method
near the optimum, not at it. ``"vr"`` changes both:

- **Curvature.** Steps are ``coef -= gamma * M g`` with ``M`` a damped
  Kronecker-factored inverse Hessian (:class:`_Preconditioner`): the class
  factor at equal probabilities, the feature factor the weighted covariance
  of the rows seen (``partial_fit``: accumulated from the chunks, the
  eigendecomposition redone when their weight has grown
  ``VR_REBUILD_GROWTH``-fold; ``fit``: the backend's feature moments),
  full up to ``VR_FULL_MAX_FEATURES`` features, else its diagonal. Its
  damping ``delta`` holds the mean leverage of a row, ``x^T (Sigma +
  delta)^-1 x``, at ``VR_DIM_FRACTION`` of the minibatch rows: a Newton-like
  step from a minibatch is stable only where single rows cannot dominate
  it. ``gamma = VR_STEP / lambda_max(M H_B)``, the largest eigenvalue of the
  preconditioned minibatch Hessian by power iteration, measured on the
  first minibatch after each rebuild.
- **Variance.** ``partial_fit`` runs SAGA (Defazio et al., 2014): it keeps
  the residuals ``s_i (p_i - e_y_i)`` of every row of the chunks it has
  seen (``K`` float32 numbers a row, up to ``VR_MEMORY_BYTES``; the chunk is
  recognised by its digest) and steps along ``(G_B(coef) - G_B(memory)) /
  (|B| s) + (sum of the memory) / S``, an unbiased estimate whose variance
  vanishes at the optimum. A chunk's first visit has no memory yet and
  takes plain (shorter) steps; a later visit makes ``VR_INNER_PASSES``
  passes of SAGA steps over the chunk. ``fit`` runs SVRG (Johnson & Zhang, 2013):
  the exact gradient at the end of each epoch, which the stopping test
  computes anyway, anchors the next epoch's steps ``G_B(coef) -
  G_B(anchor) + G(anchor)``.

L1 needs a proximal step that a non-diagonal ``M`` does not have in closed
form: ``"auto"`` is ``"vr"`` without L1 and ``"adam"`` with it.

Parameters of the estimator used here
-------------------------------------
optimizer : {"auto", "vr", "adam", "adagrad", "sgd"}
    ``"auto"`` (default): ``"vr"`` when ``l1_ratio == 0``, else
    ``"adam"``. ``"vr"``: see above. ``"adam"``: Adam (Kingma & Ba, 2015)
    with ``beta1 = 0.9``, ``beta2 = 0.999``, ``eps = 1e-8`` and bias
    correction. ``"adagrad"``: per-coordinate steps ``lr / sqrt(sum of
    squared gradients)``. ``"sgd"``: plain stochastic gradient steps.
learning_rate : "auto", "constant", "invscaling", float, or callable
    The step size ``lr_t`` at update ``t = 0, 1, ...``. For ``"vr"`` it is
    the ``gamma`` of ``coef -= gamma * M g`` (1 is a full step of the
    preconditioner's Newton model) and ``lr0 = VR_STEP / lambda_max(M H_B)``;
    ``"auto"`` there is ``"constant"`` in ``fit`` and, in ``partial_fit``,
    ``lr0 / sqrt(1 + passes / VR_DECAY_EPOCHS)`` (``passes``: epochs of
    SAGA steps so far).

    - ``"auto"`` (default): ``"invscaling"`` for adam and sgd, ``"constant"``
      for adagrad (whose steps shrink by themselves).
    - ``"constant"``: ``lr_t = lr0``.
    - ``"invscaling"``: ``lr_t = lr0 / sqrt(1 + t / T)``, with ``T`` the
      number of updates in one epoch for ``fit`` and 100 for ``partial_fit``
      (which cannot know the epoch length).
    - a float: ``lr_t`` is that number, constant.
    - a callable ``lr(t) -> float``: any schedule.

    ``lr0`` is scaled to the data on the first minibatch so that the first
    updates change a logit by a few units whatever the scale of the
    features: Adam and AdaGrad move every coefficient by about ``lr`` per
    update, which changes a logit by about ``lr * ||x~||_1`` (``x~`` is the
    row with its intercept 1), so ``lr0 = 3 / mean ||x~||_1`` (adam) and
    ``10 / mean ||x~||_1`` (adagrad). For plain SGD, ``lr0 = 30 / mean
    ||x~||^2``: the worst-case curvature bound ``||x~||^2 / 2`` is far from
    the real curvature of softmax rows (probabilities saturate), and steps
    this size were the fastest stable ones on MNIST and the digits.
batch_size : int
    Rows per update. Each block of ``b`` rows (a ``partial_fit`` call, a
    block of a file, or an in-memory epoch) is cut into ``ceil(b /
    batch_size)`` batches of nearly equal size.

Stopping (``solver="sgd"``): one iteration is one epoch. After each epoch
the exact objective is computed (one loss pass without gradient, about a
third of the cost of an epoch in memory, one more read of a file); the fit
stops when it has not improved on its best value by more than
``max(tol, 1e-4)`` (relative) for 10 epochs in a row. A stochastic method
cannot resolve smaller changes, so the batch solvers' ``tol=1e-7`` is
floored. ``max_iter`` bounds the epochs. The
running mean of the minibatch losses, free but noisy, is what the progress
bar shows.

partial_fit: the penalty of the rows seen so far
------------------------------------------------
:func:`partial_fit_step` cannot know the final number of rows. It minimises
the objective of ``fit`` on all the distinct rows passed so far: the penalty
has strength ``1 / (C S_seen)``, with ``S_seen`` the total weight of the
chunks seen. A chunk passed again (same rows, labels and weights, recognised
by a 128-bit BLAKE2 digest of its shape and evenly spaced entries) is not
counted twice, so epochs over a data set in the same chunks target the
objective of ``fit`` on it, while a stream of new rows weakens the penalty
as a fit on more rows would. (Up to
``MAX_CHUNK_DIGESTS`` digests are kept; beyond that, chunks count as new.)

From the first chunk passed again (the second epoch) on, ``coef_`` is the
polynomial-decay average of the iterates (``AVERAGE_ETA``, ``VR_AVERAGE_ETA``),
not the last iterate, which the optimizer keeps stepping from
(``_PartialFitState.coef``); without L1 only, since an average of sparse
proximal iterates is not sparse.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softmax.backends._base import RowData
from softmax.linear_loss import block_loss_gradient
from softmax.penalties import make_penalty
from softmax.solvers._base import Monitor, Objective, SolverResult, initial_coef, reject_options
from softmax.solvers._variance_reduced import (
    _VR,
    VR_AVERAGE_ETA,
    VR_FIRST_VISIT_FACTOR,
    VR_FULL_MAX_FEATURES,
    VR_INNER_PASSES,
    VR_MEMORY_BYTES,
    VR_WARM_START_SCALE,
    _FeatureStats,
    _Preconditioner,
    _residual_gradient,
    _residuals,
)

__all__ = ["NEEDS", "OPTIMIZERS", "SUPPORTS_L1", "partial_fit_step", "solve"]

SUPPORTS_L1 = True
NEEDS = "minibatches"
OPTIMIZERS = ("auto", "vr", "adam", "adagrad", "sgd")
SCHEDULES = ("auto", "constant", "invscaling")

#: Logit change per update that the automatic first step aims at (see above).
ADAM_SCALE = 3.0
ADAGRAD_SCALE = 10.0
SGD_SCALE = 30.0
#: T of "invscaling" (lr0 / sqrt(1 + t / T)) in partial_fit, which cannot know
#: the epoch length; fit(solver="sgd") uses T = one epoch of updates.
DECAY_UPDATES = 100.0
#: Smallest relative improvement per epoch that counts for solver="sgd".
MIN_SGD_TOL = 1e-4
N_ITER_NO_CHANGE = 10
#: Chunk digests partial_fit remembers (16 bytes each plus set overhead).
MAX_CHUNK_DIGESTS = 100_000
#: Entries of each array of a chunk that its digest reads (evenly spaced).
DIGEST_SAMPLE = 1 << 12
#: partial_fit from a fitted model starts "invscaling" this many decay periods
#: in (step divided by sqrt(1 + WARM_START_DECAYS)).
WARM_START_DECAYS = 30
#: Minibatch products below this many multiply-adds run on one BLAS thread.
MINIBATCH_SINGLE_THREAD_WORK = 1 << 24
#: partial_fit from its second epoch on returns the polynomial-decay average
#: of its iterates (Shamir & Zhang, 2013), avg += (eta + 1) / (k + eta) *
#: (coef - avg) at update k: weights growing as k**eta, so the average
#: forgets the early iterates of epoch 2 but smooths Adam's noise. Measured
#: on MNIST (8,000 rows, chunks of 500): 20 epochs 19% -> 12% above the
#: optimum of the training objective; eta = 3: 13%, eta = 0: 21%.
AVERAGE_ETA = 8.0
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


# --------------------------------------------------------------------------- optimizer


def _check_optimizer(optimizer: Any, learning_rate: Any, batch_size: Any) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if isinstance(learning_rate, str):
        if learning_rate not in SCHEDULES:
            raise ValueError(
                f"learning_rate must be a positive float, a callable or one of {SCHEDULES}, "
                f"got {learning_rate!r}"
            )
    elif callable(learning_rate):
        pass
    elif (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float, np.integer, np.floating))
        or not (learning_rate > 0 and math.isfinite(learning_rate))
    ):
        raise ValueError(
            f"learning_rate must be a positive finite float, a callable or one of {SCHEDULES}, "
            f"got {learning_rate!r}"
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or (batch_size < 1)
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _resolve(optimizer: str, l1: float) -> str:
    """``"auto"`` is ``"vr"`` without an L1 part and ``"adam"`` with one."""
    if optimizer == "auto":
        return "adam" if l1 > 0 else "vr"
    if optimizer == "vr" and l1 > 0:
        raise ValueError(
            "optimizer='vr' needs l1_ratio=0 (its preconditioned steps have no simple "
            "L1 proximal step); use optimizer='auto' or 'adam' with l1_ratio > 0"
        )
    return optimizer


def _row_norms(X: Any, fit_intercept: bool) -> tuple[float, float]:
    """Mean L1 norm and mean squared L2 norm of the rows of ``X`` (with the intercept 1)."""
    import scipy.sparse as sp

    if sp.issparse(X):
        l1 = np.asarray(abs(X).sum(axis=1), dtype=np.float64).ravel()
        l2 = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
    else:
        l1 = np.abs(X).sum(axis=1, dtype=np.float64)
        l2 = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    extra = 1.0 if fit_intercept else 0.0
    return float(l1.mean()) + extra, float(l2.mean()) + extra


@dataclass
class _Optimizer:
    """Update rule state: step count, first step, moments. Picklable, checkpointable."""

    kind: str
    learning_rate: Any
    shape: tuple[int, int]
    decay: float = 100.0  # T of "invscaling", in updates
    t_offset: int = 0  # schedule starts this many updates in (warm starts)
    t: int = 0
    lr0: float = float("nan")
    m: np.ndarray | None = None
    v: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind == "adam":
            self.m = np.zeros(self.shape) if self.m is None else self.m
        if self.kind in ("adam", "adagrad"):
            self.v = np.zeros(self.shape) if self.v is None else self.v

    def _schedule(self) -> str:
        if self.learning_rate == "auto":
            return "constant" if self.kind == "adagrad" else "invscaling"
        return self.learning_rate

    def rate(self, X: Any, fit_intercept: bool) -> float:
        """Step size of the next update (``X``, the batch, sets ``lr0`` once)."""
        lr = self.learning_rate
        if callable(lr) and not isinstance(lr, str):
            out = float(lr(self.t))
            if not (out > 0 and math.isfinite(out)):
                raise ValueError(f"learning_rate({self.t}) returned {out!r}; it must be > 0")
            return out
        if not isinstance(lr, str):
            return float(lr)
        if math.isnan(self.lr0):
            l1, l2 = _row_norms(X, fit_intercept)
            if self.kind == "adam":
                self.lr0 = ADAM_SCALE / max(l1, 1e-12)
            elif self.kind == "adagrad":
                self.lr0 = ADAGRAD_SCALE / max(l1, 1e-12)
            else:
                self.lr0 = SGD_SCALE / max(l2, 1e-12)
        if self._schedule() == "invscaling":
            return self.lr0 / math.sqrt(1.0 + (self.t + self.t_offset) / self.decay)
        return self.lr0

    def step(
        self, coef: np.ndarray, grad: np.ndarray, lr: float, l1: float, fit_intercept: bool
    ) -> None:
        """Update ``coef`` in place from the gradient of the smooth part; prox for L1."""
        self.t += 1
        if self.kind == "adam":
            assert self.m is not None and self.v is not None
            self.m *= _BETA1
            self.m += (1 - _BETA1) * grad
            self.v *= _BETA2
            self.v += (1 - _BETA2) * grad * grad
            # per-coordinate step lr / (sqrt(v_hat) + eps), with bias corrections
            step = np.sqrt(self.v / (1 - _BETA2**self.t))
            step += _EPS
            np.divide(lr / (1 - _BETA1**self.t), step, out=step)
            coef -= step * self.m
        elif self.kind == "adagrad":
            assert self.v is not None
            self.v += grad * grad
            step = np.sqrt(self.v)
            step += _EPS
            np.divide(lr, step, out=step)
            coef -= step * grad
        else:
            step = None
            coef -= lr * grad
        if l1 > 0:
            w = coef[:, :-1] if fit_intercept else coef
            thr = l1 * (lr if step is None else (step[:, :-1] if fit_intercept else step))
            # soft thresholding: the prox of the (diagonally scaled) L1 norm
            np.copyto(w, np.sign(w) * np.maximum(np.abs(w) - thr, 0.0))

    def state(self) -> dict[str, np.ndarray]:
        out = {
            "t": np.int64(self.t),
            "lr0": np.float64(self.lr0),
            "t_offset": np.int64(self.t_offset),
        }
        if self.m is not None:
            out["m"] = self.m
        if self.v is not None:
            out["v"] = self.v
        return out

    def load(self, st: dict[str, np.ndarray]) -> None:
        self.t = int(st["t"])
        self.lr0 = float(st["lr0"])
        self.t_offset = int(st.get("t_offset", 0))
        if "m" in st:
            self.m = np.array(st["m"])
        if "v" in st:
            self.v = np.array(st["v"])


def _update(
    opt: _Optimizer,
    coef: np.ndarray,
    X: Any,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    fit_intercept: bool,
    mean_weight: float,
    l2: float,
    l1: float,
) -> float:
    """One minibatch update; returns the batch's summed weighted loss (before it)."""
    loss, grad = block_loss_gradient(coef, X, y, w, fit_intercept=fit_intercept)
    grad *= 1.0 / (X.shape[0] * mean_weight)
    if l2:
        (grad[:, :-1] if fit_intercept else grad)[...] += l2 * (
            coef[:, :-1] if fit_intercept else coef
        )
    lr = opt.rate(X, fit_intercept)
    with np.errstate(over="ignore", invalid="ignore"):
        opt.step(coef, grad, lr, l1, fit_intercept)
    _check_finite(loss, coef, opt.t)
    return loss


def _even_batches(batches: Any, batch_size: int) -> Any:
    """Merge a batch of fewer than ``batch_size / 2`` rows into the one before it.

    A backend that cuts an epoch into fixed-size batches leaves a short last
    batch (5 rows of 1,797 with ``batch_size=256``); its noisy gradient would
    get a full Adam step every epoch, which measurably stalls convergence.
    """
    import scipy.sparse as sp

    held = None
    for batch in batches:
        if held is not None and batch[0].shape[0] < batch_size / 2:
            X = (
                sp.vstack([held[0], batch[0]], format="csr")
                if sp.issparse(batch[0])
                else (np.concatenate([held[0], batch[0]]))
            )
            held = (X, np.concatenate([held[1], batch[1]]), np.concatenate([held[2], batch[2]]))
            continue
        if held is not None:
            yield held
        held = batch
    if held is not None:
        yield held


def _seed(random_state: Any) -> int:
    """An integer seed from ``random_state`` (stored in checkpoints)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}")
        return int(random_state)
    raise ValueError(f"random_state must be None, an int or a Generator, got {random_state!r}")


def _blas_limits(batch_rows: int, n_features: int, n_classes: int) -> Any:
    """One BLAS thread for small minibatch products, where threads only contend.

    A (256 x 784) by (784 x 10) product takes ~0.1 ms on one core; splitting
    it over threads costs more in start-up than it saves (measured 5x slower
    per epoch on MNIST with two threads on a busy machine).
    """
    if batch_rows * max(1, n_features) * max(1, n_classes) >= MINIBATCH_SINGLE_THREAD_WORK:
        return contextlib.nullcontext()
    from softmax._threads import blas_limit

    return blas_limit(1)


def _bar(enabled: bool, total: int, desc: str) -> Any:
    from softmax.streaming import _NoBar, _progress_bar

    try:
        return _progress_bar(enabled, total, desc)
    except ImportError:  # progress is a nicety: without tqdm, verbose prints lines only
        return _NoBar()


# --------------------------------------------------------------------------- solve


def solve(
    data: RowData,
    *,
    C: float,
    l1_ratio: float,
    coef0: np.ndarray | None,
    tol: float,
    max_iter: int,
    verbose: int = 0,
    callback: Callable[[int, float], None] | None = None,
    random_state: Any = None,
    optimizer: str = "auto",
    learning_rate: Any = "auto",
    batch_size: int = 256,
    checkpoint: Any = None,
    checkpoint_interval: float = 60.0,
    **options: Any,
) -> SolverResult:
    """Epochs of shuffled minibatch updates (see the module docstring).

    Parameters
    ----------
    data : RowData
        Any backend with ``iter_minibatches`` (memory, file stream, Dask).
    C, l1_ratio, coef0, tol, max_iter, verbose, callback, random_state
        As in :func:`softmax.solvers.solve`; an iteration is an epoch.
    optimizer : {"auto", "vr", "adam", "adagrad", "sgd"}, default "auto"
        ``"auto"``: ``"vr"`` (preconditioned SVRG here) without L1, else ``"adam"``.
    learning_rate : "auto", "constant", "invscaling", float or callable, default "auto"
    batch_size : int, default 256
    checkpoint : str, path-like or Checkpoint, optional
        Directory to save the state in (default: the file source's
        ``checkpoint``). A fit started again with the same data, parameters
        and ``random_state`` resumes there and ends with the same model.
    checkpoint_interval : float, default 60
        Seconds between mid-epoch saves (epoch ends are always saved).

    Returns
    -------
    SolverResult
        ``objective`` is exact at the returned ``coef``; ``history`` holds the
        per-epoch estimates.
    """
    reject_options("sgd", options)
    _check_optimizer(optimizer, learning_rate, batch_size)
    obj = Objective(data, C, l1_ratio)
    coef = initial_coef(data, coef0)
    pen = obj.penalty
    fi = bool(data.fit_intercept)
    mean_weight = float(data.weight_sum) / float(data.n_samples)
    monitor = Monitor("sgd", obj, verbose, callback)
    # invscaling halves the step after 3 epochs (T = one epoch of updates)
    updates_per_epoch = max(1, math.ceil(data.n_samples / batch_size))
    name = _resolve(optimizer, pen.l1_weight)
    opt: Any
    if name == "vr":
        opt = _VR(learning_rate, coef.shape, decay=float(updates_per_epoch))
        opt.pre = _fit_preconditioner(data, pen.smooth_l2, min(batch_size, data.n_samples))
    else:
        opt = _Optimizer(name, learning_rate, coef.shape, decay=float(updates_per_epoch))
    seed = _seed(random_state)

    ckpt = _open_checkpoint(
        checkpoint if checkpoint is not None else getattr(data, "checkpoint", None)
    )
    if hasattr(data, "record_evaluations"):
        data.record_evaluations = False  # this solver checkpoints its own state
    params = json.dumps(
        {
            "C": float(C),
            "l1_ratio": float(l1_ratio),
            "optimizer": optimizer,
            "learning_rate": learning_rate if not callable(learning_rate) else repr(learning_rate),
            "batch_size": int(batch_size),
            "random_state": random_state if isinstance(random_state, (int, np.integer)) else None,
            "tol": float(tol),
            "shape": list(coef.shape),
        },
        sort_keys=True,
        default=int,
    )
    ep = _Progress()
    if ckpt is not None:
        st = ckpt.load("sgd_state")
        if st is not None:
            if str(st["params"]) != params:
                raise ValueError(
                    f"checkpoint {ckpt.path} holds an sgd fit with other parameters; delete "
                    "it or choose another checkpoint path"
                )
            if coef0 is not None and not np.array_equal(st["coef0"], coef):
                raise ValueError(f"checkpoint {ckpt.path} was started from another coef0")
            coef = np.array(st["coef"])
            opt.load({k[4:]: v for k, v in st.items() if k.startswith("opt_")})
            seed = int(st["seed"])
            ep.load(st)
            monitor.history = [float(h) for h in st["history"]]
            data.n_passes = int(st["n_passes"])
        coef_start = np.array(coef)

        def save(position: int) -> None:
            ckpt.save(
                "sgd_state",
                params=np.str_(params),
                coef=coef,
                coef0=coef_start,
                seed=np.int64(seed),
                history=np.asarray(monitor.history, dtype=np.float64),
                n_passes=np.int64(data.n_passes),
                **ep.state(position),
                **{f"opt_{k}": v for k, v in opt.state().items()},
            )

    tol_eff = max(float(tol), MIN_SGD_TOL)
    message = f"reached max_iter={max_iter} epochs"
    # a checkpoint of a fit that had converged resumes as converged
    converged = ep.no_change >= N_ITER_NO_CHANGE
    if converged:
        message = f"converged before (checkpoint {ckpt.path if ckpt else ''})"
    last_save = time.monotonic()
    l2, p = pen.smooth_l2, data.n_features
    if name == "vr" and opt.snapshot is None and ep.epoch < max_iter and not converged:
        # SVRG's anchor: the exact gradient at the start (later, at each epoch's end)
        opt.snapshot = np.array(coef)
        opt.snapshot_grad = obj.smooth(coef)[1]
        opt.snapshot_grad[:, :p] -= l2 * coef[:, :p]
    with _blas_limits(min(batch_size, data.n_samples), data.n_features, data.n_classes):
        while ep.epoch < max_iter and not converged:
            # One generator per epoch, from (seed, epoch): a resumed fit
            # replays exactly the shuffles of an uninterrupted one.
            rng = np.random.default_rng([seed, ep.epoch])
            bar = _bar(verbose > 0, data.n_samples, f"epoch {ep.epoch + 1}")
            skip = ep.position
            for i, (Xb, yb, wb) in enumerate(
                _even_batches(data.iter_minibatches(batch_size, rng), batch_size)
            ):
                if i < skip:
                    continue  # resuming: these updates are in the checkpoint already
                if name == "vr":
                    loss = _svrg_update(opt, coef, Xb, yb, wb, fit_intercept=fi,
                                        mean_weight=mean_weight, l2=l2)  # fmt: skip
                else:
                    loss = _update(
                        opt,
                        coef,
                        Xb,
                        yb,
                        wb,
                        fit_intercept=fi,
                        mean_weight=mean_weight,
                        l2=l2,
                        l1=pen.l1_weight,
                    )
                ep.loss_sum += loss
                ep.weight_sum += float(np.sum(wb))
                bar.update(Xb.shape[0])
                if ep.weight_sum > 0:
                    bar.set_postfix(loss=f"{ep.loss_sum / ep.weight_sum:.4g}", refresh=False)
                if ckpt is not None and time.monotonic() - last_save > checkpoint_interval:
                    save(i + 1)
                    last_save = time.monotonic()
            bar.close()
            # The stopping test uses the exact objective (one loss pass, no
            # gradient): the running minibatch estimate is noisy enough (about
            # 1/sqrt(n) relative) to stop a fit on small data far from the optimum.
            if name == "vr":
                # the exact gradient here is the next epoch's anchor: one pass for both
                f_epoch, g_epoch = obj.smooth(coef)
                g_epoch[:, :p] -= l2 * coef[:, :p]
                opt.snapshot, opt.snapshot_grad = np.array(coef), g_epoch
                f_epoch += obj.nonsmooth(coef)
            else:
                f_epoch = obj.smooth_value(coef) + obj.nonsmooth(coef)
            ep.epoch += 1
            monitor(ep.epoch, f_epoch)
            if f_epoch < ep.best * (1 - tol_eff):
                ep.no_change = 0
            else:
                ep.no_change += 1
                if ep.no_change >= N_ITER_NO_CHANGE:
                    converged = True
                    message = (
                        f"the objective improved by less than {tol_eff:g} (relative) per "
                        f"epoch for {N_ITER_NO_CHANGE} epochs"
                    )
            ep.best = min(ep.best, f_epoch)
            ep.last = f_epoch
            ep.loss_sum = ep.weight_sum = 0.0
            ep.position = 0
            if ckpt is not None:
                save(0)
                last_save = time.monotonic()
    if math.isnan(ep.last):  # no epoch ran (max_iter=0, or resumed at the end)
        ep.last = obj.smooth_value(coef) + obj.nonsmooth(coef)
    return monitor.result(coef, ep.epoch, converged, ep.last, message)


def _fit_preconditioner(data: RowData, l2: float, rows: int) -> _Preconditioner:
    """The ``"vr"`` preconditioner of ``fit`` from the backend's feature moments."""
    K, q = data.coef_shape
    p = q - int(bool(data.fit_intercept))
    fi = bool(data.fit_intercept)
    cov = None
    fcov = getattr(data, "feature_covariance", None)
    if fcov is not None and p <= VR_FULL_MAX_FEATURES:
        cov = fcov()
    if cov is not None:
        mean, second = (np.asarray(a, dtype=np.float64) for a in cov)
        if not fi:
            second = second + np.outer(mean, mean)
    elif hasattr(data, "feature_moments"):
        mean, sq = (np.asarray(a, dtype=np.float64) for a in data.feature_moments())
        second = sq - mean * mean if fi else sq
    else:  # a backend without moments: unit feature scales
        mean, second = np.zeros(p), np.ones(p)
    return _Preconditioner.build(mean, second, K, l2, rows, fi)


def _svrg_update(
    vr: _VR,
    coef: np.ndarray,
    X: Any,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    fit_intercept: bool,
    mean_weight: float,
    l2: float,
) -> float:
    """One SVRG step: ``g = grad_B(coef) - grad_B(anchor) + grad(anchor)``, preconditioned."""
    assert vr.snapshot is not None and vr.snapshot_grad is not None
    vr.ensure_step(coef, X, y, w, fit_intercept=fit_intercept, mean_weight=mean_weight, l2=l2)
    loss, R = _residuals(coef, X, y, w, fit_intercept)
    R -= _residuals(vr.snapshot, X, y, w, fit_intercept)[1]
    G = _residual_gradient(R, X, fit_intercept)
    G *= 1.0 / (X.shape[0] * mean_weight)
    G += vr.snapshot_grad
    vr.step(coef, G, l2, fit_intercept)
    _check_finite(loss, coef, vr.t)
    return loss


def _check_finite(loss: float, coef: np.ndarray, t: int) -> None:
    # checked at every update: one inf would turn every later logit into NaN
    if not (math.isfinite(loss) and np.isfinite(coef).all()):
        raise FloatingPointError(
            f"the stochastic updates diverged (non-finite coefficients after update "
            f"{t}); lower learning_rate or scale the features"
        )


@dataclass
class _Progress:
    """Where an sgd fit is: the resumable part of its loop state."""

    epoch: int = 0
    position: int = 0  # minibatches of the current epoch already applied
    loss_sum: float = 0.0
    weight_sum: float = 0.0
    best: float = float("inf")
    last: float = float("nan")  # exact objective after the last epoch
    no_change: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def state(self, position: int) -> dict[str, Any]:
        return {
            "epoch": np.int64(self.epoch),
            "position": np.int64(position),
            "loss_sum": np.float64(self.loss_sum),
            "weight_sum": np.float64(self.weight_sum),
            "best": np.float64(self.best),
            "last": np.float64(self.last),
            "no_change": np.int64(self.no_change),
        }

    def load(self, st: dict[str, np.ndarray]) -> None:
        self.epoch = int(st["epoch"])
        self.position = int(st["position"])
        self.loss_sum = float(st["loss_sum"])
        self.weight_sum = float(st["weight_sum"])
        self.best = float(st["best"])
        self.last = float(st["last"])
        self.no_change = int(st["no_change"])


def _open_checkpoint(spec: Any) -> Any:
    if spec is None:
        return None
    from softmax.streaming import Checkpoint

    return spec if isinstance(spec, Checkpoint) else Checkpoint(spec)


# --------------------------------------------------------------------------- partial_fit


@dataclass
class _PartialFitState:
    """What :func:`partial_fit_step` keeps on the estimator between calls."""

    coef: np.ndarray  # float64, (n_classes, n_features + fit_intercept)
    optimizer: _Optimizer
    rng: np.random.Generator
    settings: tuple[Any, ...]
    rows_seen: int = 0
    weight_seen: float = 0.0
    coef_out: Any = None  # the coef_ array last written, to notice a refit
    digests: set[bytes] = field(default_factory=set)  # chunks already counted
    average: np.ndarray | None = None  # averaged iterate written to coef_
    n_averaged: int = 0  # updates in the average


def partial_fit_step(
    estimator: Any, X: Any, y_codes: np.ndarray, weights: np.ndarray | None
) -> None:
    """Minibatch updates over a batch of rows (``partial_fit``'s engine).

    Initialises the coefficients on the first call (zeros, or the estimator's
    ``coef_`` / ``intercept_`` when it was fitted by ``fit``: warm start, with
    shorter first steps (``VR_WARM_START_SCALE``; adam etc.: the step-size
    schedule started ``WARM_START_DECAYS`` periods in) and the rows of that
    fit counted when ``fit`` recorded them in ``_fit_weight_sum_`` /
    ``_fit_n_samples_``), shuffles the rows, applies ``ceil(n /
    batch_size)`` updates (``"vr"`` on a chunk seen before:
    ``VR_INNER_PASSES`` times as many) and writes ``coef_`` and
    ``intercept_``. The optimizer state lives in
    ``estimator._sgd_state``; a later ``fit`` (new ``coef_``) or a change of
    ``optimizer`` / ``learning_rate`` / ``batch_size`` / ``fit_intercept``
    starts a fresh optimizer from the current coefficients.

    Parameters
    ----------
    estimator : SoftmaxRegression
        With ``classes_`` set; reads ``C``, ``l1_ratio``, ``fit_intercept``,
        ``optimizer``, ``learning_rate``, ``batch_size``, ``random_state``.
    X : ndarray or CSR matrix of shape (n_samples, n_features)
        float32 or float64, validated.
    y_codes : ndarray of shape (n_samples,)
        Label codes ``0 .. n_classes - 1``.
    weights : ndarray of shape (n_samples,) or None
        Row weights ``s_i`` (class weights folded in).
    """
    K = len(estimator.classes_)
    n, p = X.shape
    fi = bool(estimator.fit_intercept)
    optimizer, lr, bs = estimator.optimizer, estimator.learning_rate, estimator.batch_size
    _check_optimizer(optimizer, lr, bs)
    C, l1_ratio = float(estimator.C), float(estimator.l1_ratio)
    if n == 0:
        return
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and np.all(w == 1.0):
        w = None  # unit weights: the loss kernels skip the weighting work
    batch_weight = float(n if w is None else np.sum(w))
    if not batch_weight >= 0 or not math.isfinite(batch_weight):
        raise ValueError("sample weights must be finite and non-negative")

    name = _resolve(optimizer, l1_ratio)
    settings = (name, lr if not callable(lr) else id(lr), int(bs), fi, K, p)
    state: _PartialFitState | None = getattr(estimator, "_sgd_state", None)
    coef_now = getattr(estimator, "coef_", None)
    if state is None or state.coef.shape != (K, p + fi) or coef_now is not state.coef_out:
        coef, warm = _coef_from_estimator(estimator, K, p, fi)
        rng = np.random.default_rng(_seed(estimator.random_state))
        opt = _new_optimizer(name, lr, coef.shape, X)
        state = _PartialFitState(coef, opt, rng, settings)
        if warm:
            # Continuing from a fitted model: count the rows it was fitted on
            # (when fit recorded them) so the penalty stays that of fit, and
            # start the step-size schedule WARM_START_DECAYS periods in, so
            # the first steps do not throw away what fit found.
            state.weight_seen = float(getattr(estimator, "_fit_weight_sum_", 0.0) or 0.0)
            state.rows_seen = int(getattr(estimator, "_fit_n_samples_", 0) or 0)
            if isinstance(opt, _VR):
                opt.step_scale = VR_WARM_START_SCALE
            else:
                opt.t_offset = int(WARM_START_DECAYS * DECAY_UPDATES)
    elif state.settings != settings:
        state.optimizer = _new_optimizer(name, lr, state.coef.shape, X)
        state.settings = settings
        state.average = None

    digest = _chunk_digest(X, y_codes, w)
    repeat = digest in state.digests
    if not repeat:
        state.rows_seen += n
        state.weight_seen += batch_weight
        if len(state.digests) < MAX_CHUNK_DIGESTS:
            state.digests.add(digest)
    if state.weight_seen <= 0:
        raise ValueError("the sample weights seen so far sum to zero; nothing to learn from")
    pen = make_penalty(l1_ratio, fit_intercept=fi, strength=1.0 / (C * state.weight_seen))
    mean_weight = state.weight_seen / state.rows_seen
    coef = state.coef
    if isinstance(state.optimizer, _VR):
        if not VR_AVERAGE_ETA:
            state.average = None
        elif repeat and state.average is None:
            state.average = np.array(coef)
            state.n_averaged = 0
        _saga_pass(state, X, y_codes, w, digest, fit_intercept=fi, mean_weight=mean_weight,
                   l2=pen.smooth_l2, batch_size=int(bs))  # fmt: skip
    elif pen.l1_weight > 0:
        state.average = None  # l1_ratio may have been raised since the last call
    elif repeat and state.average is None:
        # The first chunk seen again starts the second epoch: from here on
        # coef_ is an average of the iterates (see AVERAGE_ETA). Not with L1,
        # whose proximal iterates are sparse and their average would not be.
        state.average = np.array(coef)
        state.n_averaged = 0
    if not isinstance(state.optimizer, _VR):
        _first_order_pass(state, X, y_codes, w, fit_intercept=fi, mean_weight=mean_weight,
                          l2=pen.smooth_l2, l1=pen.l1_weight, batch_size=int(bs))  # fmt: skip
    if state.average is not None:
        coef = state.average
    dtype = np.float32 if np.dtype(X.dtype) == np.float32 else np.float64
    estimator.coef_ = np.ascontiguousarray(coef[:, :p], dtype=dtype)
    if fi:
        b = coef[:, p] - coef[:, p].mean()  # centred, like fit (softmax is shift-invariant)
        estimator.intercept_ = b.astype(dtype)
    else:
        estimator.intercept_ = np.zeros(K, dtype=dtype)
    state.coef_out = estimator.coef_
    estimator._sgd_state = state


def _new_optimizer(name: str, lr: Any, shape: tuple[int, int], X: Any) -> Any:
    if name != "vr":
        return _Optimizer(name, lr, shape, decay=DECAY_UPDATES)
    stats = _FeatureStats(X.shape[1], X.shape[1] <= VR_FULL_MAX_FEATURES)
    return _VR(lr, shape, stats=stats, decay=DECAY_UPDATES, pass_decay=True)


def _saga_pass(
    state: _PartialFitState,
    X: Any,
    y: np.ndarray,
    w: np.ndarray | None,
    digest: bytes,
    *,
    fit_intercept: bool,
    mean_weight: float,
    l2: float,
    batch_size: int,
) -> None:
    """One pass of preconditioned SAGA steps over a chunk (``"vr"`` in ``partial_fit``).

    The chunk's rows keep their last residuals (``_VR.memory``, by chunk
    digest). On the first visit a step uses the minibatch gradient alone
    (the rows have no memory yet); from the second on, the SAGA estimate
    ``g = (G_B(coef) - G_B(memory)) / |B| + (sum of the memory) / S``, whose
    variance vanishes at the optimum, so constant steps converge to it;
    ``VR_INNER_PASSES`` passes over the chunk then.
    """
    vr: _VR = state.optimizer
    n, K = X.shape[0], state.coef.shape[0]
    coef = state.coef
    assert vr.gsum is not None
    first = digest not in vr.memory
    if first:
        if vr.stats is not None:
            vr.stats.add(X, w)
        size = n * K * 4
        if vr.memory_bytes + size <= VR_MEMORY_BYTES and len(vr.memory) < MAX_CHUNK_DIGESTS:
            vr.memory[digest] = np.zeros((n, K), dtype=np.float32)
            vr.memory_bytes += size
        else:
            vr.memory[digest] = None  # plain steps on this chunk from now on
    mem = vr.memory[digest]
    if mem is not None and mem.shape != (n, K):
        mem = None  # a digest collision: use no memory rather than the wrong rows'
    n_batches = math.ceil(n / batch_size)
    vr.refresh(K, l2, math.ceil(n / n_batches), fit_intercept)
    scale = 1.0 / mean_weight  # rows -> weight: the gradient of f is sum / S
    inner = 1 if first or mem is None else int(VR_INNER_PASSES)
    batches = [
        b for _ in range(inner) for b in np.array_split(state.rng.permutation(n), n_batches)
    ]
    with _blas_limits(min(n, batch_size), X.shape[1], K):
        for idx in batches:
            idx.sort()
            Xb, yb = X[idx], y[idx]
            wb = None if w is None else w[idx]
            vr.ensure_step(coef, Xb, yb, wb, fit_intercept=fit_intercept,
                           mean_weight=mean_weight, l2=l2)  # fmt: skip
            loss, R = _residuals(coef, Xb, yb, wb, fit_intercept)
            if mem is not None:
                new = R.astype(np.float32)
                R = new - mem[idx].astype(np.float64)  # what the memory learns
                mem[idx] = new
            change = _residual_gradient(R, Xb, fit_intercept)
            G = change * (scale / len(idx))
            if not first:
                G += vr.gsum * (1.0 / state.weight_seen)  # the memory's mean gradient
            if mem is not None:
                vr.gsum += change
            # plain steps (first visit) are noisy: shorter; a warm start shorter still
            factor = 1.0
            if first:
                factor = VR_FIRST_VISIT_FACTOR * vr.step_scale
            else:
                # epochs of SAGA steps so far: rows stepped on / rows remembered
                vr.saga_rows += len(idx)
                vr.passes = vr.saga_rows / max(1, vr.memory_bytes // (4 * K))
            vr.step(coef, G, l2, fit_intercept, factor)
            _check_finite(loss, coef, vr.t)
            if state.average is not None:
                state.n_averaged += 1
                k = state.n_averaged
                state.average += ((VR_AVERAGE_ETA + 1.0) / (k + VR_AVERAGE_ETA)) * (
                    coef - state.average
                )


def _first_order_pass(
    state: _PartialFitState,
    X: Any,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    fit_intercept: bool,
    mean_weight: float,
    l2: float,
    l1: float,
    batch_size: int,
) -> None:
    """One pass of Adam / AdaGrad / SGD updates over a chunk, averaging the iterates."""
    n, p = X.shape
    K = state.coef.shape[0]
    coef = state.coef
    fi, bs = fit_intercept, batch_size
    perm = state.rng.permutation(n)
    with _blas_limits(min(n, int(bs)), p, K):
        for idx in np.array_split(perm, math.ceil(n / bs)):
            idx.sort()
            _update(
                state.optimizer,
                coef,
                X[idx],
                y[idx],
                None if w is None else w[idx],
                fit_intercept=fi,
                mean_weight=mean_weight,
                l2=l2,
                l1=l1,
            )
            if state.average is not None:
                state.n_averaged += 1
                k = state.n_averaged
                state.average += ((AVERAGE_ETA + 1.0) / (k + AVERAGE_ETA)) * (coef - state.average)


def _chunk_digest(X: Any, y: np.ndarray, w: np.ndarray | None) -> bytes:
    """128-bit digest of a chunk's rows, labels and weights (no copy of dense X)."""
    import hashlib

    import scipy.sparse as sp

    h = hashlib.blake2b(digest_size=16)
    h.update(str((X.shape, str(X.dtype))).encode())
    parts = (X.data, X.indices, X.indptr) if sp.issparse(X) else (X.reshape(-1),)
    for a in (*parts, y) + (() if w is None else (w,)):
        # a few thousand evenly spaced entries of each array: hashing all of
        # a 3 MB chunk took a fifth of a partial_fit call; a collision would
        # only make the penalty slightly stronger
        a = np.asarray(a).reshape(-1)
        a = a[:: max(1, a.size // DIGEST_SAMPLE)]
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.digest()


def _coef_from_estimator(estimator: Any, K: int, p: int, fi: bool) -> tuple[np.ndarray, bool]:
    """Warm start from ``coef_`` / ``intercept_`` when their shapes fit, else zeros.

    Returns the coefficients and whether they came from the estimator.
    """
    coef = np.zeros((K, p + fi), dtype=np.float64)
    W = getattr(estimator, "coef_", None)
    if W is None or np.shape(W) != (K, p):
        return coef, False
    coef[:, :p] = W
    b = getattr(estimator, "intercept_", None)
    if fi and b is not None and np.shape(b) == (K,):
        coef[:, p] = b
    return coef, True
