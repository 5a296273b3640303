r"""The scikit-learn estimator :class:`SoftmaxRegression`.

Softmax regression (multinomial logistic regression) models

.. math::

    P(y = k \mid x) = \frac{\exp(w_k \cdot x + b_k)}{\sum_j \exp(w_j \cdot x + b_j)},
    \qquad k = 1, \dots, K,

with one weight vector per class (the symmetric parametrisation) and fits it
by minimising scikit-learn's ``LogisticRegression`` objective

.. math::

    C \sum_i s_i \, \mathrm{CE}\big(y_i, \mathrm{softmax}(W x_i + b)\big)
    + \frac{1 - \rho}{2} \lVert W \rVert_F^2 + \rho \lVert W \rVert_1,

where ``s_i = sample_weight_i * class_weight[y_i]``, ``rho = l1_ratio`` and the
intercept ``b`` is not penalised (with ``l1_type="grouped"``, ``rho sum_j
||W[:, j]||_2`` replaces ``rho ||W||_1``: the group lasso across classes);
``C = inf`` drops the penalty (the maximum-likelihood fit). With
``reference_class`` one class's coefficients are fixed at zero (the
baseline-category form of statsmodels' ``MNLogit``). This module only does
what an estimator does: it checks parameters and data, encodes labels, folds
the weights into one per row, hands a :class:`~softmax.backends.RowData` to
:func:`softmax.solvers.solve`, and turns coefficients into predictions.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from softmax._kernels import log_softmax_rows_, softmax_rows_
from softmax._validation import (
    check_class_totals,
    check_finite_input,
    check_in_range,
    check_int_at_least,
    check_sample_weight,
    class_weight_vector,
    encode_labels,
    encode_with_classes,
    labelled_rows,
    validate_data,
)
from softmax.backends import external_backend, is_dask_collection
from softmax.losses import check_label_smoothing

__all__ = ["SoftmaxRegression"]


def _fitted_on_device(est: Any) -> bool:
    """Whether ``coef_`` lives in a non-NumPy namespace (a fit under array_api_dispatch)."""
    coef = getattr(est, "coef_", None)
    return coef is not None and not isinstance(coef, np.ndarray)


def _device_predict(est: Any, X: Any, method: str) -> Any:
    from softmax._dispatch import device_predict

    return device_predict(est, X, method)


# float64 first: integer and object input is converted to float64, float32
# input is kept (and fitted) in float32.
_FLOAT_DTYPES = (np.float64, np.float32)

# Installation hint per external backend module, for a clear ImportError.
# The packages each out-of-core backend imports (its extra's), for the install hint.
_BACKEND_PACKAGES = {
    "softmax.backends.dask": ("dask", "distributed"),
    "softmax.backends.stream": ("pyarrow", "tqdm"),
}


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    r"""Softmax (multinomial logistic) regression, a drop-in for ``LogisticRegression``.

    Minimises the same objective as scikit-learn's ``LogisticRegression`` with
    the same ``C``, ``l1_ratio``, ``sample_weight`` and ``class_weight``, so
    results compare one to one, but with defaults that reach the optimum
    (``tol=1e-7``, ``max_iter=1000``, a solver chosen from the problem) and
    with one weight vector per class also when there are two classes.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength, > 0: the summed loss is multiplied by
        ``C``. Larger ``C`` fits the training data more closely; ``np.inf``
        (scikit-learn's spelling) drops the penalty: the maximum-likelihood
        fit, which exists only when the classes overlap (see Warns).
    l1_ratio : float, default=0.0
        Elastic-net mixing in [0, 1]: 0 is the L2 (ridge) penalty
        ``||W||_F^2 / 2``, 1 the L1 (lasso) penalty ``||W||_1`` (or, with
        ``l1_type="grouped"``, the group norm). The intercept is never
        penalised.
    fit_intercept : bool, default=True
        Whether to fit one intercept per class.
    class_weight : dict, "balanced" or None, default=None
        Per-class weights multiplying the sample weights: ``{label: weight}``
        (labels not named weigh 1), or ``"balanced"`` for
        ``sum(s) / (n_classes * class total of s)``, as scikit-learn computes it.
    solver : str, default="auto"
        ``"auto"``, ``"lbfgs"``, ``"newton-cg"``, ``"newton-cholesky"``,
        ``"proximal"`` (L1 / elastic net), ``"proximal-newton"`` (the grouped
        penalty; L1 too) or ``"sgd"`` (minibatches). ``"auto"``
        picks from the number of coefficients and the penalty; the choice is
        stored in ``solver_``. See ``docs/solvers.md``.
    tol : float, default=1e-7
        The relative objective gap ``(F - F*) / |F|`` the solver aims for;
        each solver estimates it its own way (``docs/solvers.md``).
    max_iter : int, default=1000
        Maximum number of solver iterations (epochs for ``"sgd"``).
    warm_start : bool, default=False
        Start from the previous fit's coefficients when the classes and
        features are the same.
    verbose : int, default=0
        Progress messages from the solver when > 0.
    random_state : int, numpy.random.Generator or None, default=None
        Seed for the stochastic solver (shuffling); unused by the others.
    optimizer : str, default="auto"
        Update rule of ``solver="sgd"`` and :meth:`partial_fit`: ``"auto"``
        is ``"vr"`` (preconditioned variance-reduced SVRG steps; see
        ``docs/streaming.md``) when ``l1_ratio == 0`` and ``"adam"``
        otherwise; also ``"adagrad"``, ``"sgd"``.
    learning_rate : float or "auto", default="auto"
        Step size of ``solver="sgd"`` and :meth:`partial_fit` (for ``"vr"``,
        the fraction of a Newton step of its preconditioner).
    batch_size : int, default=256
        Most rows per update of ``solver="sgd"`` and :meth:`partial_fit`.
    reference_class : label or None, default=None
        A class whose coefficients and intercept are fixed at zero: the
        baseline-category parametrisation of statsmodels' ``MNLogit`` and R's
        ``nnet::multinom``, in which every other row of ``coef_`` holds the
        log-odds against that class. None: the symmetric parametrisation
        (one free weight vector per class). With ``C=np.inf`` both give the
        same probabilities; with a penalty the penalty falls on the other
        classes' weights only, a different model (``docs/regression.md``).
    label_smoothing : float in [0, 1), default=0.0
        Train against smoothed targets ``(1 - eps) onehot(y) + eps / n_classes``
        (PyTorch's ``cross_entropy(..., label_smoothing=eps)``): the data term
        becomes ``sum_i s_i CE(t_i, p_i)``, which keeps the probabilities away
        from 0 and 1. 1 is refused (the target would not depend on ``y``).
        Class weights still weigh each row by its label's weight. Smoothed
        fits have no likelihood-based inference (``softmax.inference``
        refuses them) and skip the separation check (the smoothed objective
        has a minimum even on separated data).
    l1_type : {"elementwise", "grouped"}, default="elementwise"
        What the ``l1_ratio`` share of the penalty sums. ``"elementwise"``:
        ``|W_kj|`` (L1 / elastic net; a weight leaves the model for one
        class). ``"grouped"``: the group lasso across classes, ``sum_j
        ||W[:, j]||_2`` over the features' columns (one weight per class),
        so that a feature leaves the model for every class at once (glmnet's
        ``type.multinomial = "grouped"``); fitted by ``"proximal-newton"``
        (``docs/model_selection.md``). Neither ``partial_fit`` nor
        ``solver="sgd"`` does the grouped penalty.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Weights ``W``, float32 when fitted on float32 data, else float64.
    intercept_ : ndarray of shape (n_classes,)
        Intercepts ``b``, centred to sum to 0 (the model is unchanged by a
        common shift; with ``C=np.inf`` the weights are centred the same
        way), or with ``reference_class`` not centred and 0 for that class;
        zeros when ``fit_intercept=False``.
    classes_ : ndarray of shape (n_classes,)
        The sorted distinct labels; column ``k`` of ``predict_proba`` is
        ``classes_[k]``.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when fitted on a data frame with string column names.
    n_iter_ : int
        Iterations the solver made.
    objective_ : float
        The objective (formula above) at the solution.
    converged_ : bool
        Whether the solver met its tolerance before ``max_iter``.
    n_passes_ : int
        Passes over the data (loss/gradient evaluations and Hessian products).
    solver_ : str
        The solver used (``"auto"`` resolved).
    n_features_selected_ : int
        Features whose weights are not all zero (over the classes): the
        features the model uses, fewer than ``n_features_in_`` with an L1 or
        group penalty.
    separation_ : SeparationResult or None
        The separation check of an unpenalised (or nearly unpenalised: ``C *
        sum(sample_weight) >= 1e8``) fit on rows in memory (see Warns), or
        None when it was not run.

    Warns
    -----
    SeparationWarning
        When a fit with ``C=np.inf`` or a negligible penalty is on separated
        data (some combination of the features puts the classes on their own
        sides of a hyperplane): the maximum-likelihood estimate does not
        exist and the coefficients along the separating direction grow
        without bound (or are set by the tiny penalty alone). The warning
        names the classes and features; for ``C=np.inf`` ``converged_`` is
        then False. See :func:`softmax.check_separation`.
    ConvergenceWarning
        When the solver stopped at ``max_iter``.

    See Also
    --------
    sklearn.linear_model.LogisticRegression : same objective; for two classes
        it fits one weight vector (see Notes).

    Notes
    -----
    With two classes this is the same model as binary logistic regression:
    ``P(y = classes_[1] | x) = sigmoid((w_1 - w_0) . x + b_1 - b_0)``. The L2
    penalty is shared by ``w_0`` and ``w_1``; at the optimum ``w_0 = -w_1``,
    so ``||w_0||^2 + ||w_1||^2 = ||w_1 - w_0||^2 / 2``: ``SoftmaxRegression(C)``
    equals ``LogisticRegression(C=2 * C)`` with ``coef_ = w_1 - w_0``. With the
    pure L1 penalty (``l1_ratio=1``) the two have the same ``C``.
    ``decision_function`` follows scikit-learn's binary convention and returns
    that log-odds ``(w_1 - w_0) . x + b_1 - b_0`` of shape (n_samples,).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from softmax import SoftmaxRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SoftmaxRegression(C=10.0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.predict_proba(X[:1]).round(4)
    array([[0.9972, 0.0028, 0.    ]])
    >>> clf.converged_, clf.solver_
    (True, 'newton-cholesky')
    """

    def __init__(
        self,
        C: float = 1.0,
        l1_ratio: float = 0.0,
        fit_intercept: bool = True,
        class_weight: dict[Any, float] | str | None = None,
        solver: str = "auto",
        tol: float = 1e-7,
        max_iter: int = 1000,
        warm_start: bool = False,
        verbose: int = 0,
        random_state: int | np.random.Generator | None = None,
        optimizer: str = "auto",
        learning_rate: float | str = "auto",
        batch_size: int = 256,
        reference_class: Any = None,
        label_smoothing: float = 0.0,
        l1_type: str = "elementwise",
    ) -> None:
        self.C = C
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.reference_class = reference_class
        self.label_smoothing = label_smoothing
        self.l1_type = l1_type

    def __sklearn_tags__(self):  # -> sklearn.utils.Tags (sklearn >= 1.6)
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_class = True
        return tags

    # -- fitting -----------------------------------------------------------------

    def _check_params(self) -> dict[str, Any]:
        """Validate the hyper-parameters; return them normalised."""
        from softmax.solvers import SOLVERS
        from softmax.solvers._base import check_stopping

        valid = ["auto", *SOLVERS]
        if not isinstance(self.solver, str) or self.solver not in valid:
            raise ValueError(f"solver must be one of {valid}; got {self.solver!r}.")
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise ValueError(f"fit_intercept must be True or False; got {self.fit_intercept!r}.")
        tol, _ = check_stopping(self.tol, 0)
        from softmax.penalties import L1_TYPES

        if not isinstance(self.l1_type, str) or self.l1_type not in L1_TYPES:
            raise ValueError(
                f"l1_type must be one of {list(L1_TYPES)}; got {self.l1_type!r} ('grouped' "
                "drops a feature from every class at once, 'elementwise' is the L1 / "
                "elastic net)."
            )
        return {
            "l1_type": self.l1_type,
            "C": _check_C(self.C),
            "l1_ratio": check_in_range(self.l1_ratio, "l1_ratio", 0.0, 1.0),
            "tol": tol,
            "max_iter": check_int_at_least(self.max_iter, "max_iter", 1),
            # verbose=True is common usage: bools count as 0 / 1 here
            "verbose": check_int_at_least(
                int(self.verbose) if isinstance(self.verbose, bool) else self.verbose,
                "verbose",
                0,
            ),
            "batch_size": check_int_at_least(self.batch_size, "batch_size", 1),
            "fit_intercept": bool(self.fit_intercept),
            "label_smoothing": check_label_smoothing(self.label_smoothing),
        }

    def fit(
        self,
        X: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        callback: Callable[..., None] | None = None,
    ) -> SoftmaxRegression:
        """Fit the model: minimise the penalised weighted cross-entropy.

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)
            Training rows: a NumPy array, SciPy sparse matrix (used as CSR),
            pandas or polars data frame; float32 is kept, anything else is
            converted to float64. A Dask collection or a
            ``softmax.streaming.FileSource`` is fitted out of core.
        y : array-like of shape (n_samples,)
            Labels of any type (ints, strings, bools); at least two classes.
            May be None only for a file source that carries its target.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights (not all zero); None weighs rows 1.
        callback : callable, default=None
            ``callback(iteration, objective)``, called once per solver
            iteration. A callback that takes a ``gap`` keyword is called as
            ``callback(iteration, objective, gap=gap)``: the solver's estimate
            of the relative objective gap, which the fit stops on when it
            falls below ``tol`` (None from solvers that make none, e.g. "sgd").

        Returns
        -------
        self : SoftmaxRegression
            The fitted estimator.

        Raises
        ------
        ValueError
            Invalid parameters, empty X, NaN or inf in X, y of the wrong length,
            only one class (with positive weight), negative or all-zero
            sample weights, a ``class_weight`` label that is not a class, or a
            solver that cannot do the penalty.
        """
        params = self._check_params()
        from softmax import _dispatch

        device_xp = _dispatch.device_namespace(X)
        if device_xp is None:  # without dispatch: device arrays copied once, with a warning
            X, y, sample_weight = _dispatch.to_host("fit", X, y, sample_weight)
        backend = None if device_xp is not None else external_backend(X)
        scale = None  # rows too large for float64 products: see softmax._scaling
        if device_xp is not None:
            data = _dispatch.device_rows(self, device_xp, X, y, sample_weight, params)
            X_checked, feature_names = None, None
        elif backend is not None:
            data, feature_names = self._external_data(backend, X, y, sample_weight, params)
            X_checked = None
        else:
            data, X_checked, scale = self._kept_in_memory_data(X, y, sample_weight, params)
            feature_names = getattr(self, "feature_names_in_", None)
        # the problem the solver sees: params, or its exact rescaling
        solved = params
        coef0 = self._coef0(data)
        if scale is not None:
            C_scaled, l1_scaled, lam = scale.penalty(params["C"], params["l1_ratio"])
            solved = {**params, "C": C_scaled, "l1_ratio": l1_scaled}
            coef0 = scale.coef0(coef0, int(data.n_features))
            callback = _unscaled_callback(callback, scale, params["C"], C_scaled, lam)

        from softmax.solvers import Problem, resolve_solver

        reference = self._reference_code(data.classes)
        problem = Problem(
            data,
            C=solved["C"],
            l1_ratio=solved["l1_ratio"],
            verbose=params["verbose"],
            random_state=self.random_state,
            reference=reference,
            l1_type=params["l1_type"],
        )
        # a configured solver that a regularisation path picks for this C
        # (private, set only by softmax.model_selection._fit_path), else by name
        solver = resolve_solver(getattr(self, "_path_solver", None) or self.solver, problem)
        if solver.name == "sgd":
            solver = solver.with_options(
                optimizer=self.optimizer,
                learning_rate=self.learning_rate,
                batch_size=params["batch_size"],
            )
        result = solver.solve(
            problem,
            coef0,
            tol=params["tol"],
            max_iter=params["max_iter"],
            callback=callback,
        )

        separation = self._check_separation(data, result, solved, reference, feature_names)
        if scale is not None:
            p = int(data.n_features)
            result = dataclasses.replace(
                result,
                coef=scale.coef(result.coef, p),
                objective=scale.objective(result.objective, params["C"], C_scaled, lam),
                history=[scale.objective(F, params["C"], C_scaled, lam) for F in result.history],
            )

        # Only now, with a result in hand, replace the fitted state.
        self._set_coef(result.coef, int(data.n_features), data.dtype, reference)
        if device_xp is not None:
            _dispatch.publish(self, data)
        self.classes_ = np.asarray(data.classes)
        self.n_features_in_ = int(data.n_features)
        if feature_names is not None:
            self.feature_names_in_ = np.asarray(feature_names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_iter_ = int(result.n_iter)
        self.objective_ = float(result.objective)
        self.converged_ = bool(result.converged)
        self.n_passes_ = int(result.n_passes)
        self.solver_ = solver.name
        self.separation_ = separation
        if separation is not None and separation.separated and not np.isfinite(solved["C"]):
            # the likelihood has no maximum: nothing the solver stopped at is one
            self.converged_ = False
        # partial_fit after fit continues with fit's penalty strength, which
        # is relative to the weight of the rows fit has seen.
        self._fit_weight_sum_ = float(data.weight_sum)
        self._fit_n_samples_ = int(data.n_samples)
        if separation is not None and separation.separated:
            from softmax._separation import SeparationWarning

            warnings.warn(
                _separation_advice(separation, params["C"]), SeparationWarning, stacklevel=2
            )
        elif not result.converged:
            warnings.warn(
                self._convergence_advice(result, solver.name, params, X_checked),
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _reference_code(self, classes: Any) -> int | None:
        """The code of ``reference_class`` among ``classes`` (None when not set).

        Raises
        ------
        ValueError
            When ``reference_class`` is not one of the classes.
        """
        if self.reference_class is None:
            return None
        classes = np.asarray(classes)
        wanted = _py(self.reference_class)
        hit = [k for k, c in enumerate(classes.tolist()) if c == wanted]
        if not hit:
            raise ValueError(
                f"reference_class={self.reference_class!r} is not one of the classes "
                f"{classes.tolist()}; pass one of them (or None for the symmetric form)."
            )
        return hit[0]

    def _check_separation(
        self, data: Any, result: Any, params: dict[str, Any], reference: int | None, names: Any
    ) -> Any:
        """The separation check of an (almost) unpenalised fit, or None.

        Runs when ``C = inf`` or ``C * sum(s) >= NEARLY_UNPENALISED`` and the
        rows are in memory: the linear programs of
        :func:`softmax._separation.separation_lp` (first on a subset of the
        rows, skipped when too large). When they are skipped, the cheap
        signal of complete separation is used: a data term near zero (every
        row fitted with certainty), which only separated data allow.
        """
        from softmax._separation import (
            AUTO_MAX_NNZ,
            NEARLY_UNPENALISED,
            SeparationResult,
            separation_lp,
        )

        C = params["C"]
        if np.isfinite(C) and C * float(data.weight_sum) < NEARLY_UNPENALISED:
            return None
        if params["label_smoothing"] > 0:
            # smoothed targets put weight on every class: the data term has a
            # minimum even on separated rows, so there is nothing to warn about
            return None
        fi = bool(data.fit_intercept)
        ref = 0 if reference is None else reference
        from softmax.backends.memory import InMemoryData

        found = None
        if isinstance(data, InMemoryData):
            terms = (
                [f"x{j}" for j in range(data.n_features)]
                if names is None
                else [str(n) for n in names]
            )
            found = separation_lp(
                data.X, data.y, data.weights, np.asarray(data.classes), ref,
                [*terms, "intercept"] if fi else terms, fit_intercept=fi, max_nnz=AUTO_MAX_NNZ,
            )  # fmt: skip
        if found is None and np.isfinite(result.objective):
            # the loss per unit of weight, of order log(K) at the start: near
            # zero only when every row is fitted with certainty
            data_term = result.objective if not np.isfinite(C) else None
            if data_term is not None and data_term < 1e-6 * float(data.weight_sum):
                found = SeparationResult(
                    True, complete=True, reference=_py(np.asarray(data.classes)[ref])
                )
        return found

    def _kept_in_memory_data(
        self, X: Any, y: Any, sample_weight: Any, params: dict[str, Any]
    ) -> tuple[Any, Any, Any]:
        """:meth:`_in_memory_data`, or what it returned for the previous fit on the same arrays.

        Only while the private flag ``_keep_rows`` is set: the paths of
        :mod:`softmax.model_selection` fit one internal estimator at every
        ``C`` on the same arrays, which are then validated once and keep
        their backend's buffers (a tenth of a warm-started fit's time on
        digits). Kept for the same objects (``is``) and the same parameters
        that shape the rows; the pass count restarts at every fit.
        """
        if not getattr(self, "_keep_rows", False):
            return self._in_memory_data(X, y, sample_weight, params)
        shape = (params["fit_intercept"], params["label_smoothing"], repr(self.class_weight))
        kept = self.__dict__.get("_kept_rows")
        if (
            kept is not None
            and kept[0] is X
            and kept[1] is y
            and kept[2] is sample_weight
            and kept[3] == shape
        ):
            kept[4][0].n_passes = 0
            return kept[4]
        rows = self._in_memory_data(X, y, sample_weight, params)
        self._kept_rows = (X, y, sample_weight, shape, rows)
        return rows

    def _in_memory_data(
        self, X: Any, y: Any, sample_weight: Any, params: dict[str, Any]
    ) -> tuple[Any, Any, Any]:
        """Validate in-memory rows and labels; return ``(InMemoryData, X, scale)``.

        ``scale`` is None, or the :class:`softmax._scaling.RowScale` the rows
        of the backend were rescaled by (``X`` itself is as validated).
        """
        X, y, classes, codes, weights = labelled_rows(self, X, y, sample_weight, self.class_weight)
        check_class_totals(classes, np.bincount(codes, weights=weights, minlength=len(classes)))

        from softmax._scaling import row_scale
        from softmax.backends.memory import InMemoryData

        scale = row_scale(X)
        rows = X if scale is None else scale.rows(X)
        data = InMemoryData(
            rows,
            codes,
            weights,
            classes,
            fit_intercept=params["fit_intercept"],
            label_smoothing=params["label_smoothing"],
        )
        return data, X, scale

    def _external_data(
        self, backend: str, X: Any, y: Any, sample_weight: Any, params: dict[str, Any]
    ) -> tuple[Any, Any]:
        """Hand out-of-core rows to the backend module that owns them."""
        try:
            module = importlib.import_module(backend)
        except ImportError as exc:
            from softmax._optional import install_hint

            packages = _BACKEND_PACKAGES.get(backend, (backend.rsplit(".", 1)[-1],))
            raise ImportError(
                f"Fitting on {type(X).__name__} needs the {backend} backend, which could "
                f"not be imported ({exc}); install it with: {install_hint(*packages)}"
            ) from exc
        data = module.build_row_data(
            X,
            y,
            sample_weight=sample_weight,
            classes=None,
            class_weight=self.class_weight,
            fit_intercept=params["fit_intercept"],
            dtype=None,
            label_smoothing=params["label_smoothing"],
        )
        if len(data.classes) < 2:
            raise ValueError(
                "SoftmaxRegression needs samples of at least 2 classes in the data, but "
                f"the data contain only one class: {np.asarray(data.classes).tolist()}."
            )
        return data, data.feature_names

    def _coef0(self, data: Any) -> np.ndarray | None:
        """The previous fit's coefficients as ``coef0``, when ``warm_start`` applies."""
        if not self.warm_start or not hasattr(self, "coef_"):
            return None
        same = self.coef_.shape == (data.n_classes, data.n_features) and np.array_equal(
            self.classes_, data.classes
        )
        if not same:
            warnings.warn(
                "warm_start=True but the classes or the number of features differ from "
                "the previous fit; starting from zero.",
                UserWarning,
                stacklevel=3,
            )
            return None
        return self._coef_matrix(data.fit_intercept)

    def _coef_matrix(self, fit_intercept: bool) -> np.ndarray:
        """``coef_`` and ``intercept_`` as one float64 array, intercepts last."""
        K, p = self.coef_.shape
        coef = np.zeros((K, p + int(fit_intercept)), dtype=np.float64)
        coef[:, :p] = self.coef_
        if fit_intercept:
            coef[:, p] = self.intercept_
        return coef

    def _set_coef(
        self, coef: np.ndarray, n_features: int, dtype: Any, reference: int | None = None
    ) -> None:
        """Publish a solver's ``(n_classes, n_features + fit_intercept)`` coefficients.

        ``coef_`` in ``dtype`` (float32 rows give a float32 model), and
        ``intercept_`` centred to sum to zero (zeros without intercept), or,
        with a reference class (code ``reference``), as they are: that
        class's row is zero.
        """
        dt = np.float32 if np.dtype(dtype) == np.float32 else np.float64
        self.coef_ = np.ascontiguousarray(coef[:, :n_features], dtype=dt)
        if coef.shape[1] > n_features:
            intercept = np.array(coef[:, n_features], dtype=np.float64)
            if reference is None:
                # Adding a constant to every class's intercept leaves the model
                # unchanged and the intercept is unpenalised; report the centred
                # representative so that results do not depend on the solver.
                intercept -= intercept.mean()
            self.intercept_ = intercept.astype(dt)
        else:
            self.intercept_ = np.zeros(coef.shape[0], dtype=dt)

    def _convergence_advice(self, result: Any, solver: str, params: dict[str, Any], X: Any) -> str:
        """The ConvergenceWarning text, with only the advice that applies."""
        advice = []
        if result.n_iter >= params["max_iter"]:
            advice.append(f"increase max_iter (now {params['max_iter']})")
        if X is not None and _badly_scaled(X):
            advice.append(
                "scale the features (e.g. sklearn.preprocessing.StandardScaler, or "
                "MaxAbsScaler for sparse X): their scales differ a lot, which slows "
                "first-order solvers down"
            )
        if solver == "proximal-newton" and params["l1_type"] == "grouped":
            # the only solver for the grouped penalty
            advice.append(f"accept a larger tol (now {params['tol']:g})")
        elif solver == "proximal" and params["l1_ratio"] > 0:
            # the only other solver for L1 / elastic net is proximal-newton, made
            # for the grouped penalty: a looser tolerance is the plain advice
            advice.append(f"accept a larger tol (now {params['tol']:g})")
        else:
            others = {
                "lbfgs": "'newton-cg' or 'newton-cholesky'",
                "sgd": "'lbfgs' (exact) for data that fit in memory",
                "newton-cg": "'lbfgs'",
                "newton-cholesky": "'newton-cg' or 'lbfgs'",
                "proximal": "'lbfgs' (the L2 penalty needs no proximal steps)",
            }
            advice.append(f"try solver={others.get(solver, repr('lbfgs'))}")
        if params["C"] >= 1e3:
            advice.append(
                f"decrease C (now {params['C']:g}): with little regularisation, data that "
                "are (nearly) separable push the coefficients towards infinity "
                "(softmax.check_separation(X, y) tells)"
            )
        message = getattr(result, "message", "")
        detail = f" ({message})" if message else ""
        return (
            f"SoftmaxRegression: solver {solver!r} did not converge in {result.n_iter} "
            f"iterations{detail}. To fix it: " + "; ".join(advice) + "."
        )

    # -- incremental fitting -----------------------------------------------------

    def partial_fit(
        self,
        X: Any,
        y: Any,
        classes: Any = None,
        sample_weight: Any = None,
    ) -> SoftmaxRegression:
        """One stochastic update from a batch of rows (online learning).

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)
            A batch of rows.
        y : array-like of shape (n_samples,)
            Their labels; each must be one of ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Every label that can occur. Required on the first call (as in
            scikit-learn), and if given later it must be the same.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights (>= 0, not all zero).

        Returns
        -------
        self : SoftmaxRegression
        """
        params = self._check_params()
        if params["l1_type"] == "grouped" and params["l1_ratio"] > 0:
            raise ValueError(
                "partial_fit does not do the grouped penalty (l1_type='grouped' with "
                "l1_ratio > 0): its stochastic steps have no block soft-thresholding. Use "
                "fit (solver 'proximal-newton'), or l1_type='elementwise'."
            )
        first = getattr(self, "classes_", None) is None
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            # checked as class labels once; later calls only compare (cheaply)
            wanted = encode_labels(np.asarray(classes))[0] if first else np.unique(classes)
            if not first and not np.array_equal(self.classes_, wanted):
                raise ValueError(
                    f"`classes={wanted!r}` is not the same as on last call to "
                    f"partial_fit, was: {self.classes_!r}"
                )
            if len(wanted) < 2:
                raise ValueError(f"classes must hold at least 2 classes; got {wanted.tolist()}.")
        from softmax._dispatch import device_namespace

        if device_namespace(X) is not None or _fitted_on_device(self):
            raise ValueError(
                "partial_fit does not run on device arrays under array_api_dispatch; "
                "use fit (L-BFGS on the device), or pass NumPy arrays outside "
                "sklearn.config_context(array_api_dispatch=True)."
            )
        from softmax._dispatch import to_host

        X, y, sample_weight = to_host("partial_fit", X, y, sample_weight)
        if self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' needs the class counts of all the data, which "
                "partial_fit never sees; compute them once with "
                "sklearn.utils.class_weight.compute_class_weight and pass a dict."
            )
        X, y = validate_data(
            self,
            X,
            y,
            reset=first,
            accept_sparse="csr",
            dtype=_FLOAT_DTYPES,
            order="C",
            multi_output=False,
        )
        from softmax._scaling import row_scale

        scale = row_scale(X)
        if scale is not None:
            # fit rescales its rows once; batches are rescaled by nobody, as a
            # later batch could need another power of two than the first
            raise ValueError(
                f"partial_fit: the rows reach {scale.largest:.3g}, beyond what the products "
                f"of a step can hold in {X.dtype}. Divide every batch by the same power of "
                f"two first, e.g. 2**{scale.exponent} (exact), or use fit, which rescales "
                "the rows itself."
            )
        classes_ = wanted if first else self.classes_
        reference = self._reference_code(classes_)
        codes = encode_with_classes(y, classes_)
        weights = check_sample_weight(sample_weight, X.shape[0])
        weights *= class_weight_vector(self.class_weight, classes_)[codes]
        self.classes_ = classes_  # only once the batch is known to be valid

        state = self._partial_fit_state_for(X.shape[1], params)
        coef = state.step(
            X,
            codes,
            weights,
            C=params["C"],
            l1_ratio=params["l1_ratio"],
            batch_size=params["batch_size"],
            reference=reference,
            label_smoothing=params["label_smoothing"],
        )
        self._set_coef(coef, X.shape[1], X.dtype, reference)
        # what partial_fit last published: a later fit replaces it, and the
        # next call then starts afresh from fit's model
        self._partial_fit_coef = self.coef_
        return self

    def _partial_fit_state_for(self, n_features: int, params: dict[str, Any]) -> Any:
        """The :class:`PartialFitState` to continue, or a new one.

        New on the first call, after a ``fit`` (which replaced ``coef_``: its
        model is continued, a warm start), or when the model's shape changed;
        a change of ``optimizer``, ``learning_rate`` or ``batch_size`` keeps
        the iterate and the rows seen but starts a new optimizer.
        """
        from softmax.solvers.stochastic import PartialFitState

        K = len(self.classes_)
        fi = params["fit_intercept"]
        has_l1 = params["l1_ratio"] > 0
        settings = PartialFitState.settings_of(
            self.optimizer, self.learning_rate, params["batch_size"], fi, K, n_features
        )
        state = getattr(self, "_partial_fit_state", None)
        continued = state is not None and getattr(self, "coef_", None) is getattr(
            self, "_partial_fit_coef", None
        )
        if continued and state.coef.shape == (K, n_features + fi):
            if not state.matches(settings):
                state.restart_optimizer(settings, self.optimizer, self.learning_rate, has_l1)
            return state
        fitted = getattr(self, "coef_", None) is not None and np.shape(self.coef_) == (
            K,
            n_features,
        )
        state = PartialFitState.start(
            n_classes=K,
            n_features=n_features,
            fit_intercept=fi,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            batch_size=params["batch_size"],
            has_l1=has_l1,
            random_state=self.random_state,
            coef0=self._coef_matrix(fi) if fitted else None,
            # continuing a fitted model: count the rows it was fitted on (when
            # fit recorded them) so that the penalty stays that of fit
            seen_rows=int(getattr(self, "_fit_n_samples_", 0) or 0) if fitted else 0,
            seen_weight=float(getattr(self, "_fit_weight_sum_", 0.0) or 0.0) if fitted else 0.0,
        )
        self._partial_fit_state = state
        return state

    @property
    def n_features_selected_(self) -> int:
        """Features with a non-zero weight for at least one class (see the class doc)."""
        check_is_fitted(self)
        coef = self.coef_
        if not isinstance(coef, np.ndarray):  # a device array (array_api_dispatch)
            from softmax._array_api import array_namespace
            from softmax._dispatch import _host

            coef = _host(array_namespace(coef), coef)
        return int(np.count_nonzero(np.any(coef != 0, axis=0)))

    # -- prediction --------------------------------------------------------------

    def _logits(self, X: Any, method: str = "predict") -> np.ndarray:
        """Validated ``X @ coef_.T + intercept_`` of shape (n_samples, n_classes).

        NaN or inf in ``X`` always reach the logits of their row (``inf * 0`` is
        NaN), so the finite check runs on the ``(n, K)`` logits, a fraction of
        the cost of checking the ``(n, p)`` input, and only on failure is ``X``
        examined to name the culprit.
        """
        check_is_fitted(self)
        fast = (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.shape[0] > 0
            and X.shape[1] == self.n_features_in_
            and X.dtype in _FLOAT_DTYPES
            and getattr(self, "feature_names_in_", None) is None
        )
        if not fast:  # the plain-array case needs none of validate_data's ~50 us
            from softmax._dispatch import to_host

            (X,) = to_host(method, X)
            X = validate_data(
                self,
                X,
                reset=False,
                accept_sparse="csr",
                dtype=_FLOAT_DTYPES,
                ensure_all_finite=False,
            )
        # The product in X's dtype: casting the (K, p) model costs nothing,
        # where NumPy's own promotion of float32 rows against a float64 model
        # would copy the (n, p) rows to float64 and run a GEMM at half the
        # rate. The (n, K) logits then take the promoted dtype (a float64
        # model gives float64 outputs, as before, with float32-accurate logits).
        out_dtype = np.result_type(X.dtype, self.coef_.dtype)
        coef = self.coef_.astype(X.dtype, copy=False)
        logits = self._linear(X, coef, self.intercept_.astype(out_dtype, copy=False))
        # The sum is NaN/inf whenever any entry is; a finite-but-huge total
        # only sends us down the exact (slow) path, which re-checks entrywise.
        with np.errstate(over="ignore", invalid="ignore"):
            suspicious = not np.isfinite(logits.sum())
        if suspicious and not np.isfinite(logits).all():
            check_finite_input(X)  # raises when X itself holds NaN or inf
            # X is finite but the logits overflowed: retry in float64, else fail.
            # from the model itself: ``coef`` may have been rounded to float32
            logits = self._linear(
                X, self.coef_.astype(np.float64), self.intercept_.astype(np.float64)
            )
            if not np.isfinite(logits).all():
                raise ValueError(
                    "The logits X @ coef_.T + intercept_ overflow for some rows of X; "
                    "the features are far larger than the ones the model was fitted on. "
                    "Scale X the same way as the training data."
                )
        return logits

    @staticmethod
    def _linear(X: Any, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        # the product in the dtype of X and coef; the logits in intercept's
        logits = np.ascontiguousarray(X @ coef.T, dtype=intercept.dtype)
        # Test intercept_ itself, not the fit_intercept parameter, which may
        # have been changed by set_params since the fit.
        if intercept.any():
            logits += intercept
        return logits

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits ``X @ coef_.T + intercept_``; the log-odds when there are 2 classes.

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), or (n_samples,) for 2 classes
            With two classes, scikit-learn's binary convention: the log-odds
            ``log P(classes_[1]) - log P(classes_[0])``, positive where
            ``classes_[1]`` is predicted.
        """
        if is_dask_collection(X):
            return _predict_dask(self, X, "decision_function")
        if _fitted_on_device(self):
            return _device_predict(self, X, "decision_function")
        logits = self._logits(X, "decision_function")
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``softmax(X @ coef_.T + intercept_)``.

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Column ``k`` is ``P(y = classes_[k] | x)``; rows sum to 1. float32
            when both X and the model are float32. A float64 model on float32
            rows computes ``X @ coef_.T`` in float32 (the model is cast, the
            rows are not copied) and the rest in float64.
        """
        if is_dask_collection(X):
            return _predict_dask(self, X, "predict_proba")
        if _fitted_on_device(self):
            return _device_predict(self, X, "predict_proba")
        logits = self._logits(X, "predict_proba")
        softmax_rows_(logits)  # in place: no second (n, K) array
        return logits

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log class probabilities ``log_softmax(X @ coef_.T + intercept_)``.

        Exact also where ``predict_proba`` underflows to 0.

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        if is_dask_collection(X):
            return _predict_dask(self, X, "predict_log_proba")
        if _fitted_on_device(self):
            return _device_predict(self, X, "predict_log_proba")
        logits = self._logits(X, "predict_log_proba")
        log_softmax_rows_(logits)
        return logits

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Elements of ``classes_`` (ties go to the first class).
        """
        if is_dask_collection(X):
            return _predict_dask(self, X, "predict")
        if _fitted_on_device(self):
            return _device_predict(self, X, "predict")
        # argmax of the logits equals argmax of the probabilities: no softmax.
        logits = self._logits(X)  # checks that the model is fitted
        return self.classes_[np.argmax(logits, axis=1)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``predict(X)`` against ``y`` (weighted when asked).

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        if is_dask_collection(X):
            return _predict_dask(self, X, "score", y=y, sample_weight=sample_weight)
        if not _fitted_on_device(self):
            from softmax._dispatch import device_namespace, to_host

            if device_namespace(X) is None:  # y and the weights, not only X, reach NumPy
                X, y, sample_weight = to_host("score", X, y, sample_weight)
        return super().score(X, y, sample_weight=sample_weight)

    def summary(
        self, X: Any, y: Any, sample_weight: Any = None, *, alpha: float = 0.05, **kwargs: Any
    ) -> str:
        """A statsmodels-style table of coefficients, standard errors and tests.

        The shortcut for ``softmax.inference(self, X, y, sample_weight,
        **kwargs).summary(alpha)``; see :func:`softmax.inference` for the
        options (``cov_type``, ``groups``, ``reference``, ...) and what the
        numbers mean. Fit with ``C=np.inf`` for maximum-likelihood inference.

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)
            The rows the model was fitted on.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            The weights of the fit (frequency weights).
        alpha : float, default=0.05
            Confidence intervals at level ``1 - alpha``.
        **kwargs
            Passed to :func:`softmax.inference`.

        Returns
        -------
        str
            Print it.
        """
        from softmax._inference import inference

        return inference(self, X, y, sample_weight, **kwargs).summary(alpha)

    def save(self, path: Any) -> None:
        """Write the fitted model to ``path`` (see :func:`softmax.io.save_model`).

        The file holds no pickle; load it with :func:`softmax.load_model`.
        """
        # the writing half of the file format sits below the estimator;
        # softmax.io, which builds estimators from files, sits above it
        from softmax._model_format import save_model

        save_model(self, path)


def _predict_dask(estimator: SoftmaxRegression, X: Any, method: str, **kwargs: Any) -> Any:
    try:
        from softmax.backends.dask import predict_dask
    except ImportError as exc:
        from softmax._optional import install_hint

        raise ImportError(
            f"Predicting on a Dask collection needs the Dask backend ({exc}); install it "
            f"with: {install_hint(*_BACKEND_PACKAGES['softmax.backends.dask'])}"
        ) from exc
    return predict_dask(estimator, X, method, **kwargs)


def _check_C(C: Any) -> float:
    """``C`` as a float; ValueError unless it is a number > 0 (``np.inf``: no penalty)."""
    if (
        isinstance(C, (bool, np.bool_))
        or not isinstance(C, (int, float, np.integer, np.floating))
        or not C > 0
    ):
        raise ValueError(f"C must be a number > 0 (np.inf for no penalty); got {C!r}.")
    return float(C)


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _unscaled_callback(
    callback: Callable[..., None] | None, scale: Any, C: float, C_scaled: float, lam: float
) -> Callable[..., None] | None:
    """``callback`` fed the original objective while the solver sees rescaled rows."""
    if callback is None:
        return None
    from softmax.solvers._base import takes_gap

    with_gap = takes_gap(callback)

    def unscaled(iteration: int, objective: float, gap: float | None = None) -> None:
        F = scale.objective(objective, C, C_scaled, lam)
        if with_gap:
            callback(iteration, F, gap=gap)
        else:
            callback(iteration, F)

    return unscaled


def _separation_advice(found: Any, C: float) -> str:
    """The SeparationWarning text of a fit (the check's message, or the cheap signal's)."""
    if found.features:
        text = found.message()
    else:
        text = (
            "The fitted loss is nearly zero: every row is fitted with certainty, which "
            "only separated data allow (the separation linear program was too large to "
            "run; softmax.check_separation(X, y) runs it and names the features). The "
            "maximum-likelihood estimate does not exist."
        )
    if np.isfinite(C):
        text += (
            f" This fit's penalty is negligible (C={C:g}): the coefficients along the "
            "separating direction are set by it alone."
        )
    return "SoftmaxRegression: " + text


def _badly_scaled(X: Any) -> bool:
    """Whether feature scales (root mean squares) differ by more than 100x."""
    n = X.shape[0]
    if hasattr(X, "tocsr"):
        sq = np.asarray(X.multiply(X).sum(axis=0)).ravel()
    else:
        sq = np.einsum("ij,ij->j", X, X, dtype=np.float64)  # no (n, p) temporary
    rms = np.sqrt(sq / max(n, 1))
    rms = rms[rms > 0]
    if rms.size == 0:
        return False
    return bool(rms.max() > 100.0 or rms.max() / rms.min() > 100.0)
