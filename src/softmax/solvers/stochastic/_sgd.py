"""``solver="sgd"``: epochs of shuffled minibatch updates over a backend's rows.

One iteration is one epoch: the minibatches of
:meth:`~softmax.backends._base.RowData.iter_minibatches` (short last batches
merged), each an :meth:`Optimizer.update`; then the exact objective (one
pass, :meth:`Optimizer.end_epoch`, which for ``"vr"`` also computes the
next epoch's SVRG anchor). The objective's sequence over epochs stops the
fit:

- ``tol`` (the relative objective gap, as for every solver): the rate
  estimate of the batch solvers (:class:`~softmax.solvers._base.RateGapEstimate`
  over windows of 10 epochs) below ``tol``;
- a stall: no relative improvement above ``min_improvement`` (a separate
  option, 1e-4 by default: a stochastic method cannot resolve smaller
  changes) for ``n_iter_no_change`` epochs in a row. It counts as
  converged: the method has reached its noise level.

The state (coefficients, the optimizer's :meth:`~Optimizer.state`, epoch,
minibatch position and seed) is checkpointed at each epoch end and every
``checkpoint_interval`` seconds when a checkpoint directory is given (or the
file source has one); the shuffles are drawn from ``(seed, epoch)``, so a
resumed fit replays the same batches and ends with the same model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from softmax._persist import Checkpoint, progress_bar
from softmax.backends._base import Capability
from softmax.solvers._base import RateGapEstimate, Run, Solver
from softmax.solvers._problem import Problem, SolverResult
from softmax.solvers.stochastic._batches import (
    Batch,
    Scale,
    check_finite,
    even_batches,
    minibatch_threads,
    seed_of,
)
from softmax.solvers.stochastic._optimizers import check_settings, resolve_optimizer

__all__ = ["SGD"]


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


@dataclass(frozen=True)
class SGD(Solver):
    """Epochs of shuffled minibatch updates (module docstring; ``docs/streaming.md``).

    Parameters
    ----------
    optimizer : {"auto", "vr", "adam", "adagrad", "sgd"}, default "auto"
        The update rule; ``"auto"``: ``"vr"`` (preconditioned SVRG) without
        L1, else ``"adam"``.
    learning_rate : "auto", "constant", "invscaling", float or callable, default "auto"
    batch_size : int, default 256
        Rows per update.
    min_improvement : float, default 1e-4
        A relative improvement of the exact objective per epoch below this
        counts as none (the stall rule).
    n_iter_no_change : int, default 10
        Epochs without improvement that stop the fit.
    checkpoint : str, path-like or Checkpoint, optional
        Directory to save the state in (default: the file source's). A fit
        started again with the same data, parameters and ``random_state``
        resumes there and ends with the same model.
    checkpoint_interval : float, default 60
        Seconds between mid-epoch saves (epoch ends are always saved).
    """

    name: ClassVar[str] = "sgd"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.MINIBATCHES})
    supports_l1: ClassVar[bool] = True
    tol_controls: ClassVar[str] = (
        "the rate estimate of the exact per-epoch objectives' decrease (two windows of "
        "10 epochs), relative to |F|; a stall (no relative improvement above "
        "min_improvement in n_iter_no_change epochs) also stops"
    )

    optimizer: str = "auto"
    learning_rate: Any = "auto"
    batch_size: int = 256
    min_improvement: float = 1e-4
    n_iter_no_change: int = 10
    checkpoint: Any = None
    checkpoint_interval: float = 60.0

    def __post_init__(self) -> None:
        check_settings(self.optimizer, self.learning_rate, self.batch_size)

    def check(self, problem: Problem) -> None:
        super().check(problem)
        resolve_optimizer(self.optimizer, problem.has_l1)

    def _solve(self, run: Run) -> SolverResult:
        obj, monitor = run.objective(self.name)
        problem, tol, max_iter = run.problem, run.tol, run.max_iter
        data = problem.data
        coef = run.coef0
        pen = obj.penalty
        fi = bool(data.fit_intercept)
        scale = Scale(
            fi,
            int(data.n_samples),
            float(data.weight_sum),
            pen.smooth_l2,
            pen.l1_weight,
            fixed_row=problem.reference,
            label_smoothing=problem.label_smoothing,
        )
        batch_size = int(self.batch_size)
        # invscaling halves the step after 3 epochs (T = one epoch of updates)
        updates_per_epoch = max(1, math.ceil(data.n_samples / batch_size))
        rules = resolve_optimizer(self.optimizer, problem.has_l1)
        opt = rules.fit(self.learning_rate, coef.shape, decay=float(updates_per_epoch))
        seed = seed_of(problem.random_state)
        ckpt = Checkpoint.open(self.checkpoint if self.checkpoint is not None else data.checkpoint)
        data.record_evaluations = False  # this solver checkpoints its own state
        lr = self.learning_rate
        params = json.dumps(
            {
                "C": problem.C,
                "l1_ratio": problem.l1_ratio,
                "optimizer": self.optimizer,
                "learning_rate": lr if not callable(lr) else repr(lr),
                "batch_size": batch_size,
                "random_state": problem.random_state
                if isinstance(problem.random_state, (int, np.integer))
                else None,
                "tol": tol,
                "shape": list(coef.shape),
            },
            sort_keys=True,
            default=int,
        )
        ep = _Progress()
        coef_start = np.array(coef)
        if ckpt is not None:
            st = ckpt.load("sgd_state")
            if st is not None:
                if str(st["params"]) != params:
                    raise ValueError(
                        f"checkpoint {ckpt.path} holds an sgd fit with other parameters; "
                        "delete it or choose another checkpoint path"
                    )
                if not np.array_equal(st["coef0"], coef_start):
                    raise ValueError(f"checkpoint {ckpt.path} was started from another coef0")
                coef = np.array(st["coef"])
                opt.load({k[4:]: v for k, v in st.items() if k.startswith("opt_")})
                seed = int(st["seed"])
                ep.load(st)
                monitor.history = [float(h) for h in st["history"]]
                data.n_passes = int(st["n_passes"])

        def save(position: int) -> None:
            assert ckpt is not None
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

        rate = RateGapEstimate()
        for f in monitor.history:
            rate.add(f / obj.scale)
        message = f"reached max_iter={max_iter} epochs"
        # a checkpoint of a fit that had converged resumes as converged
        converged = ep.no_change >= self.n_iter_no_change
        if converged:
            message = f"converged before (checkpoint {ckpt.path if ckpt else ''})"
        last_save = time.monotonic()
        if ep.epoch < max_iter and not converged:
            opt.start_fit(obj, coef, min(batch_size, data.n_samples))
        with minibatch_threads(min(batch_size, data.n_samples), data.n_features, data.n_classes):
            while ep.epoch < max_iter and not converged:
                # One generator per epoch, from (seed, epoch): a resumed fit
                # replays exactly the shuffles of an uninterrupted one.
                rng = np.random.default_rng([seed, ep.epoch])
                bar = progress_bar(
                    problem.verbose > 0, data.n_samples, f"epoch {ep.epoch + 1}", required=False
                )
                skip = ep.position
                for i, (Xb, yb, wb) in enumerate(
                    even_batches(data.iter_minibatches(batch_size, rng), batch_size)
                ):
                    if i < skip:
                        continue  # resuming: these updates are in the checkpoint already
                    loss = opt.update(coef, Batch(Xb, yb, wb), scale)
                    check_finite(loss, coef, opt.t)
                    ep.loss_sum += loss
                    ep.weight_sum += float(np.sum(wb))
                    bar.update(Xb.shape[0])
                    if ep.weight_sum > 0:
                        bar.set_postfix(loss=f"{ep.loss_sum / ep.weight_sum:.4g}", refresh=False)
                    if (
                        ckpt is not None
                        and time.monotonic() - last_save > self.checkpoint_interval
                    ):
                        save(i + 1)
                        last_save = time.monotonic()
                bar.close()
                # The stopping test uses the exact objective (one pass): the
                # running minibatch estimate is noisy enough (about 1/sqrt(n)
                # relative) to stop a fit on small data far from the optimum.
                f_epoch = opt.end_epoch(obj, coef)
                ep.epoch += 1
                monitor(ep.epoch, f_epoch)
                rate.add(f_epoch)
                gap = rate.estimate()
                if f_epoch < ep.best * (1 - self.min_improvement):
                    ep.no_change = 0
                else:
                    ep.no_change += 1
                if ep.no_change >= self.n_iter_no_change:
                    converged = True
                    message = (
                        f"the objective improved by less than {self.min_improvement:g} "
                        f"(relative) per epoch for {self.n_iter_no_change} epochs"
                    )
                elif tol > 0 and gap <= tol * abs(f_epoch):
                    converged = True
                    message = f"estimated relative gap {gap / abs(f_epoch):.2e} <= tol={tol:g}"
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
