r"""Statistical inference for a fitted :class:`~softmax.SoftmaxRegression`.

The public names are exported by the package: ``softmax.inference``,
``softmax.InferenceResults``, ``softmax.lr_test``,
``softmax.check_separation`` (and the result classes).

:func:`inference` reads a fitted estimator's ``coef_``, ``intercept_`` and
``classes_``, asks the rows ``X, y`` (wherever they live: any backend that
declares :attr:`~softmax.backends.Capability.INFORMATION`) for the
log-likelihood, score and information in one blocked pass
(:func:`softmax.linear_loss.block_information`) and returns an
:class:`InferenceResults`: standard errors, z values,
p-values, confidence intervals, the covariance, likelihood statistics, a
statsmodels-style ``summary()``, Wald and likelihood-ratio tests and average
marginal effects.

Parametrisation
---------------
The estimator's symmetric form (one weight vector per class) is not identified
without a penalty: adding the same vector to every class changes nothing.
Inference is therefore reported in the baseline-category form of statsmodels'
``MNLogit`` and R's ``nnet::multinom``: for a reference class ``r``,

.. math::

    \log \frac{P(y = k \mid x)}{P(y = r \mid x)} = \theta_k \cdot x + \theta_{k0},
    \qquad \theta_k = \beta_k - \beta_r, \quad k \ne r,

so each coefficient is the change in the log-odds of class ``k`` *against the
reference class* per unit of the feature. For an unpenalised fit this
difference is exactly the maximum-likelihood estimate of the reference form
(the likelihood depends on the coefficients only through it). Any class can be
the reference (``reference=``); the estimator's ``reference_class``, else the
first of ``classes_``, is the default.

Covariances
-----------
With ``I`` the observed information (minus the Hessian of the log-likelihood)
and ``u_i`` the score of row ``i``, all in the reference form, and ``s_i`` the
sample weights read as *frequency weights* (a row of weight 3 counts as three
identical rows; ``N = sum_i s_i`` is the number of observations):

- ``"nonrobust"``: ``I^{-1}``; right when the model is correctly specified.
- ``"HC0"``: the sandwich ``I^{-1} (sum_i s_i u_i u_i^T) I^{-1}``; consistent
  when the rows are independent even if the model's probabilities are wrong.
- ``"HC1"``: HC0 times ``N / (N - k)`` (``k`` coefficients), the usual
  small-sample factor (Stata's; statsmodels' ``MNLogit`` returns HC0 for it).
- ``"cluster"``: ``I^{-1} (sum_g U_g U_g^T) I^{-1}`` with ``U_g`` the summed
  scores of cluster ``g``, times ``G / (G - 1) * (N - 1) / (N - k)`` for ``G``
  clusters: statsmodels' default (``use_correction=True``) and Stata's CRV1.
  Rows may be correlated within a cluster, not across.

For an L2-penalised fit (finite ``C``) the information is the penalised one,
``I + (1/C) Q \otimes I_p`` on the slopes, ``Q`` the penalty's curvature in
the reported coordinates (the intercepts are unpenalised): for a symmetric fit
(``reference_class=None``) the penalty is on every class's weights, with the
common shift profiled out, ``Q = I_{K-1} - 11^T / K``; for a fit with
``reference_class`` it is on the other classes' weights, ``Q = I`` when the
reported reference is that class (and the same penalty, mapped linearly, for
another reference). It is the covariance of the penalised estimate around
its own (shrunk) target, labelled as such in ``summary()``. L1 and
elastic-net fits are refused: standard errors computed after the penalty has
selected the features ignore the selection and are not valid.

Scale
-----
The information has ``((K - 1)(p + 1))^2`` entries. It is built in one pass
over ``X`` by row blocks, by symmetric rank-k updates (half the flops of a
general product) into one float64 matrix, then equilibrated and factored by
Cholesky. Standard errors need only the diagonal of the inverse (one
triangular inverse); the full covariance is computed when first asked for.
Time ``O(n ((K - 1)(p + 1))^2)``, memory about twice the information matrix
(see ``docs/inference.md`` for measured figures).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg, stats
from scipy.linalg import lapack

from softmax._separation import (
    AUTO_MAX_NNZ,
    SeparationResult,
    SeparationWarning,
    separation_lp,
)
from softmax._threads import blas_limit
from softmax.linear_loss import _dense_rows, _information_rows, _row_block, mirror_upper

__all__ = [
    "COV_TYPES",
    "ChiSquareTest",
    "InferenceResults",
    "MarginalEffects",
    "SeparationResult",
    "SeparationWarning",
    "check_separation",
    "inference",
    "lr_test",
]

#: Covariance types :func:`inference` computes.
COV_TYPES = ("nonrobust", "HC0", "HC1", "cluster")
#: ``check_separation="auto"`` builds a separation program only when its
#: constraint matrix has at most this many non-zeros (see
#: :data:`softmax._separation.AUTO_MAX_NNZ`); otherwise the check is skipped
#: and the summary says so.
SEPARATION_AUTO_MAX_NNZ = AUTO_MAX_NNZ
#: Information matrices with fewer rows than this are computed with
#: :data:`BLAS_THREADS` BLAS threads: their products are too small for threads
#: to pay, and on a busy machine each thread wake-up can cost a whole
#: scheduler time slice, thousands of times the work of a small product.
#: Larger ones keep the caller's BLAS setting: the rank-k updates of the
#: information are big enough for several threads.
BLAS_THREADS_BELOW = 1024
BLAS_THREADS = 1
#: A Newton step larger than this many standard errors means the coefficients
#: are not at the optimum for the data given: a warning says so.
OPTIMALITY_WARN_SE = 1e-2
#: Name of the intercept term in tables.
INTERCEPT = "intercept"


# -- small results ----------------------------------------------------------------


@dataclass(frozen=True)
class ChiSquareTest:
    """A chi-square test (Wald or likelihood ratio).

    Attributes
    ----------
    statistic : float
        The chi-square statistic.
    df : int
        Its degrees of freedom under the null hypothesis.
    pvalue : float
        ``P(chi2(df) >= statistic)``.
    description : str
        What was tested.
    """

    statistic: float
    df: int
    pvalue: float
    description: str = ""

    def __str__(self) -> str:
        what = f"{self.description}: " if self.description else ""
        return f"{what}chi2({self.df}) = {self.statistic:.4f}, p = {self.pvalue:.4g}"


def _forg(x: float, prec: int) -> str:
    """statsmodels' table number format: fixed point, or %g when tiny or huge."""
    if not np.isfinite(x):
        return str(x)
    if abs(x) >= 1e4 or abs(x) < 1e-4:
        return f"{x:.{prec}g}"
    return f"{x:.{prec}f}"


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _plain(value: Any) -> Any:
    """A label as a JSON value: bool, int, float or str."""
    value = _py(value)
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _num(value: Any) -> float | None:
    """A float for JSON; None for NaN or infinity (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _coef_tables(
    title_of: list[str],
    term_names: list[str],
    values: np.ndarray,
    bse: np.ndarray,
    zvals: np.ndarray,
    pvals: np.ndarray,
    ci: np.ndarray,
    alpha: float,
    coef_label: str = "coef",
) -> tuple[list[str], int]:
    """One statsmodels-like table per row of ``values``; returns lines and width."""
    name_w = max(14, *(len(t) for t in term_names), *(len(t) for t in title_of))
    lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
    cols = [coef_label, "std err", "z", "P>|z|", lo, hi]
    width = name_w + 11 * len(cols)
    lines: list[str] = []
    for c, title in enumerate(title_of):
        lines.append(title.rjust(name_w) + "".join(h.rjust(11) for h in cols))
        lines.append("-" * width)
        for j, term in enumerate(term_names):
            cells = [
                _forg(values[c, j], 4),
                _forg(bse[c, j], 3),
                _forg(zvals[c, j], 3),
                f"{pvals[c, j]:.3f}",
                _forg(ci[c, j, 0], 3),
                _forg(ci[c, j, 1], 3),
            ]
            lines.append(term.ljust(name_w) + "".join(x.rjust(11) for x in cells))
        if c < len(title_of) - 1:
            lines.append("-" * width)
    return lines, width


def _two_columns(
    left: list[tuple[str, str]], right: list[tuple[str, str]], width: int
) -> list[str]:
    """statsmodels' header: two columns of ``label   value`` pairs."""
    half = width // 2
    out = []
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ("", "")
        b = right[i] if i < len(right) else ("", "")
        la = f"{a[0]} {a[1].rjust(half - 3 - len(a[0]) - 1)}" if a[0] else ""
        lb = f"{b[0]} {b[1].rjust(width - half - len(b[0]) - 1)}" if b[0] else ""
        out.append((la.ljust(half) + lb).rstrip())
    return out


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width)


# -- marginal effects -----------------------------------------------------------


class MarginalEffects:
    """Average marginal effects of each feature on each class probability.

    ``effects[k, j]`` is the weighted average over the rows of
    ``dP(y = classes[k] | x) / dx_j``, with delta-method standard errors from
    the covariance of the results it came from (statsmodels'
    ``get_margeff(at="overall", method="dydx")``). The effects of a feature on
    the ``K`` probabilities sum to zero.

    Attributes
    ----------
    effects, bse, tvalues, pvalues : ndarray of shape (n_classes, n_features)
    classes : ndarray of shape (n_classes,)
        All classes, reference included, in ``classes_`` order.
    term_names : list of str
        The features (the intercept has no marginal effect).
    """

    def __init__(
        self,
        effects: np.ndarray,
        cov: np.ndarray,
        classes: np.ndarray,
        term_names: list[str],
        dep_name: str,
        cov_type: str,
    ) -> None:
        self.effects = effects
        self._cov = _read_only(cov)
        self.classes = classes
        self.term_names = term_names
        self.dep_name = dep_name
        self.cov_type = cov_type
        self.bse = np.sqrt(np.clip(np.diag(cov), 0, None)).reshape(effects.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.tvalues = effects / self.bse
        self.pvalues = 2 * stats.norm.sf(np.abs(self.tvalues))

    def cov_params(self) -> np.ndarray:
        """Covariance of ``effects.ravel()``, shape (n_classes * n_features,) * 2 (read-only)."""
        return self._cov

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Wald intervals, shape (n_classes, n_features, 2)."""
        z = stats.norm.isf(_check_alpha(alpha) / 2)
        return np.stack([self.effects - z * self.bse, self.effects + z * self.bse], axis=-1)

    def summary(self, alpha: float = 0.05) -> str:
        """A table per class, as statsmodels' ``get_margeff().summary()``."""
        titles = [f"{self.dep_name}={_py(c)}" for c in self.classes]
        body, width = _coef_tables(
            titles,
            self.term_names,
            self.effects,
            self.bse,
            self.tvalues,
            self.pvalues,
            self.conf_int(alpha),
            alpha,
            coef_label="dy/dx",
        )
        head = "Average marginal effects (dy/dx, delta-method standard errors)"
        return "\n".join(
            [
                head.center(width).rstrip(),
                "=" * width,
                f"Dep. Variable: {self.dep_name}    Covariance: {self.cov_type}",
                "=" * width,
                *body,
                "=" * width,
            ]
        )

    def to_frame(self, alpha: float = 0.05) -> Any:
        """Long-format pandas DataFrame: one row per (class, feature)."""
        return _long_frame(
            self.classes, self.term_names, self.effects, self.bse, self.tvalues,
            self.pvalues, self.conf_int(alpha), value_name="dy_dx",
        )  # fmt: skip


def _long_frame(classes, terms, values, bse, z, p, ci, value_name: str) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the cli/test extras
        from softmax._optional import install_hint

        raise ImportError(
            f"to_frame() needs pandas; install it with: {install_hint('pandas')}"
        ) from exc
    K, T = values.shape
    return pd.DataFrame(
        {
            "class": np.repeat(np.asarray([_py(c) for c in classes], dtype=object), T),
            "term": np.tile(np.asarray(terms, dtype=object), K),
            value_name: values.ravel(),
            "std_err": bse.ravel(),
            "z": z.ravel(),
            "p_value": p.ravel(),
            "ci_lower": ci[..., 0].ravel(),
            "ci_upper": ci[..., 1].ravel(),
        }
    )


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _check_alpha(alpha: float) -> float:
    if not isinstance(alpha, (int, float, np.floating)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}.")
    return float(alpha)


# -- the results ------------------------------------------------------------------


class InferenceResults:
    """Standard errors, tests and likelihood statistics of a fitted model.

    Made by :func:`inference`; read its docstring for what each covariance
    assumes. Coefficient arrays have one row per non-reference class (in
    ``classes`` order) and one column per term (the features, then the
    intercept); flattened arrays (``cov_params()``, the rows of a Wald
    restriction) are in C order of that shape, index ``k * n_terms + j``, the
    order of statsmodels' ``MNLogit``.

    Attributes
    ----------
    params, bse, tvalues, pvalues : ndarray of shape (n_classes - 1, n_terms)
        Coefficients ``theta_k = beta_k - beta_ref``, their standard errors, z
        values (``params / bse``, named as in statsmodels) and two-sided
        normal p-values.
    classes : ndarray of shape (n_classes - 1,)
        The non-reference classes, one per row of ``params``.
    reference : object
        The reference class.
    term_names : list of str
        Feature names (``feature_names_in_`` when fitted on a data frame, else
        ``x0, x1, ...``), then ``"intercept"`` when the model has one.
    cov_type : str
        ``"nonrobust"``, ``"HC0"``, ``"HC1"`` or ``"cluster"``.
    llf, llnull, llr, llr_pvalue : float
        Log-likelihood (weighted), that of the intercept-only model (of the
        all-zero model without intercept), the likelihood-ratio statistic
        ``2 (llf - llnull)`` and its chi-square p-value on ``df_model``.
    aic, bic, prsquared : float
        ``-2 llf + 2 k``, ``-2 llf + log(nobs) k`` (``k`` coefficients) and
        McFadden's pseudo R-squared ``1 - llf / llnull``.
    nobs : float
        Number of observations, ``sum(sample_weight)`` (frequency weights).
    df_model, df_resid : float
        ``(n_classes - 1) * n_features`` and ``nobs - k``.
    n_groups : int or None
        Clusters with positive weight, for ``cov_type="cluster"``.
    penalized : bool
        Whether the fit had an L2 penalty (finite ``C``); the covariance is
        then the penalised one.
    C : float
    converged : bool
        The estimator's ``converged_``.
    newton_step_se : float
        The largest coefficient change of a Newton step from ``params`` on the
        (penalised) likelihood of these data, in standard errors: about 0
        at the optimum; above 0.01 a warning is issued.
    separation : SeparationResult or None
        The separation check (None when it was not run).
    """

    params: np.ndarray
    bse: np.ndarray
    tvalues: np.ndarray
    pvalues: np.ndarray
    classes: np.ndarray
    reference: Any
    term_names: list[str]
    cov_type: str
    llf: float
    llnull: float
    nobs: float
    df_model: float
    df_resid: float
    n_groups: int | None
    penalized: bool
    C: float
    converged: bool
    newton_step_se: float
    separation: SeparationResult | None
    dep_name: str
    fit_intercept: bool

    def __init__(self, **fields: Any) -> None:
        # Built by inference() only: fields are the attributes above plus the
        # private state below (the Cholesky factor, rows for marginal effects).
        cov = fields.pop("cov", None)
        self._cov_cache: np.ndarray | None = None if cov is None else _read_only(cov)
        self._factor: np.ndarray | None = fields.pop("factor")
        self._scale: np.ndarray = fields.pop("scale")
        self._X = fields.pop("X")
        self._weights = fields.pop("weights")
        self._margeff: MarginalEffects | None = None
        self.__dict__.update(fields)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.tvalues = self.params / self.bse
        self.pvalues = 2 * stats.norm.sf(np.abs(self.tvalues))

    # statistics derived from the stored ones
    @property
    def k_params(self) -> int:
        """Number of estimated coefficients, ``(n_classes - 1) * n_terms``."""
        return int(self.params.size)

    @property
    def llr(self) -> float:
        return 2.0 * (self.llf - self.llnull)

    @property
    def llr_pvalue(self) -> float:
        return float(stats.chi2.sf(self.llr, self.df_model))

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * self.k_params

    @property
    def bic(self) -> float:
        return -2.0 * self.llf + math.log(self.nobs) * self.k_params

    @property
    def prsquared(self) -> float:
        return 1.0 - self.llf / self.llnull if self.llnull != 0 else float("nan")

    def cov_params(self) -> np.ndarray:
        """Covariance of ``params.ravel()``, shape (k_params, k_params).

        For ``"nonrobust"`` it is computed on first use (``O(k^3)``, in the
        memory of the Cholesky factor of the information, which is not needed
        afterwards) and kept. The array returned is read-only (it is the kept
        one, not a copy: it can be large); ``.copy()`` it to change it.
        """
        if self._cov_cache is None:
            with _blas_threads(self.k_params):
                inv, info = lapack.dpotri(self._factor, lower=0, overwrite_c=1)
            if info != 0:  # pragma: no cover - the factor was checked at creation
                raise np.linalg.LinAlgError(f"dpotri failed (info={info})")
            self._factor = None
            mirror_upper(inv)
            inv /= self._scale[:, None]
            inv /= self._scale[None, :]
            self._cov_cache = _read_only(inv)
        return self._cov_cache

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Wald confidence intervals ``params -/+ z_{1 - alpha/2} bse``.

        Returns
        -------
        ci : ndarray of shape (n_classes - 1, n_terms, 2)
            Lower and upper bounds.
        """
        z = stats.norm.isf(_check_alpha(alpha) / 2)
        return np.stack([self.params - z * self.bse, self.params + z * self.bse], axis=-1)

    # -- tables ------------------------------------------------------------------

    def _method(self) -> str:
        return f"L2-penalised (C={self.C:g})" if self.penalized else "MLE"

    def summary(self, alpha: float = 0.05) -> str:
        """A statsmodels-style report: model statistics and one table per class.

        Parameters
        ----------
        alpha : float, default=0.05
            Confidence intervals at level ``1 - alpha``.

        Returns
        -------
        str
            Print it.
        """
        titles = [f"{self.dep_name}={_py(c)}" for c in self.classes]
        body, width = _coef_tables(
            titles,
            self.term_names,
            self.params,
            self.bse,
            self.tvalues,
            self.pvalues,
            self.conf_int(alpha),
            alpha,
        )
        nobs = f"{self.nobs:.0f}" if float(self.nobs).is_integer() else f"{self.nobs:.6g}"
        left = [
            ("Dep. Variable:", self.dep_name),
            ("Model:", "SoftmaxRegression"),
            ("Method:", self._method()),
            ("Reference class:", str(_py(self.reference))),
            ("Covariance Type:", self.cov_type),
            ("converged:", str(self.converged)),
        ]
        right = [
            ("No. Observations:", nobs),
            ("Df Residuals:", f"{self.df_resid:.6g}"),
            ("Df Model:", f"{self.df_model:.6g}"),
            ("Pseudo R-squ.:", f"{self.prsquared:.4f}"),
            ("Log-Likelihood:", f"{self.llf:#.5g}"),
            ("LL-Null:", f"{self.llnull:#.5g}"),
            ("LLR p-value:", f"{self.llr_pvalue:#.4g}"),
        ]
        lines = [
            "SoftmaxRegression Inference Results".center(width).rstrip(),
            "=" * width,
            *_two_columns(left, right, width),
            "=" * width,
            *body,
            "=" * width,
        ]
        for i, note in enumerate(self.notes(), 1):
            wrapped = _wrap(note, width - 4)
            lines.append(f"[{i}] " + wrapped[0])
            lines.extend("    " + w for w in wrapped[1:])
        return "\n".join(lines)

    def notes(self) -> list[str]:
        """The numbered notes of :meth:`summary`: what the numbers mean, and warnings."""
        notes = [
            f"Coefficients are log-odds against the reference class {_py(self.reference)!r}, "
            "whose coefficients are 0."
        ]
        notes.append(_COV_NOTES[self.cov_type].format(G=self.n_groups))
        if self.penalized:
            notes.append(
                f"L2-penalised fit (C={self.C:g}): the coefficients are shrunk towards 0 and "
                "the covariance is the inverse of the penalised information (the "
                "likelihood's plus the penalty's curvature); it ignores the shrinkage bias. "
                "Refit with C=np.inf for maximum-likelihood inference."
            )
        if self.separation is None:
            notes.append(
                "Separation was not checked (the linear program is too large for 'auto', or "
                "the rows are not in memory); run softmax.check_separation(X, y) to check it."
            )
        elif self.separation.separated:
            notes.append("WARNING: " + self.separation.message())
        if self.newton_step_se > OPTIMALITY_WARN_SE:
            notes.append(
                f"WARNING: the coefficients are not at the optimum for these data (a Newton "
                f"step moves them by {self.newton_step_se:.3g} standard errors)."
            )
        return notes

    def to_dict(self, alpha: float = 0.05) -> dict[str, Any]:
        """The results as plain JSON data (what ``softmax ... --summary --json`` prints).

        Parameters
        ----------
        alpha : float, default=0.05
            Confidence intervals at level ``1 - alpha``.

        Returns
        -------
        dict
            Model statistics (``llf``, ``llnull``, ``llr``, ``llr_pvalue``,
            ``aic``, ``bic``, ``prsquared``, ``nobs``, ``df_model``,
            ``df_resid``, ...), ``method``, ``cov_type``, ``reference``,
            ``classes``, ``terms``, ``C`` (None when unpenalised),
            ``separation`` (None when not checked), ``notes``, and
            ``coefficients``: one record per (class, term) with ``class,
            term, coef, std_err, z, p_value, ci_lower, ci_upper``. Only str,
            int, float, bool, None, lists and dicts: ``json.dumps`` takes it
            (non-finite floats, a z of a zero standard error say, become None).
        """
        ci = self.conf_int(alpha)
        T = len(self.term_names)
        records = [
            {
                "class": _plain(c),
                "term": self.term_names[j],
                "coef": _num(self.params[i, j]),
                "std_err": _num(self.bse[i, j]),
                "z": _num(self.tvalues[i, j]),
                "p_value": _num(self.pvalues[i, j]),
                "ci_lower": _num(ci[i, j, 0]),
                "ci_upper": _num(ci[i, j, 1]),
            }
            for i, c in enumerate(self.classes)
            for j in range(T)
        ]
        sep = self.separation
        return {
            "model": "SoftmaxRegression",
            "dep_variable": self.dep_name,
            "method": self._method(),
            "penalized": bool(self.penalized),
            "C": _num(self.C) if self.penalized else None,
            "cov_type": self.cov_type,
            "reference": _plain(self.reference),
            "classes": [_plain(c) for c in self.classes],
            "terms": list(self.term_names),
            "nobs": _num(self.nobs),
            "df_model": _num(self.df_model),
            "df_resid": _num(self.df_resid),
            "k_params": int(self.k_params),
            "n_groups": self.n_groups,
            "llf": _num(self.llf),
            "llnull": _num(self.llnull),
            "llr": _num(self.llr),
            "llr_pvalue": _num(self.llr_pvalue),
            "aic": _num(self.aic),
            "bic": _num(self.bic),
            "prsquared": _num(self.prsquared),
            "converged": bool(self.converged),
            "newton_step_se": _num(self.newton_step_se),
            "separation": None
            if sep is None
            else {
                "separated": bool(sep.separated),
                "complete": bool(sep.complete),
                "classes": [_plain(c) for c in sep.classes],
                "pairs": [[_plain(a), _plain(b)] for a, b in sep.pairs],
                "features": list(sep.features),
            },
            "alpha": float(_check_alpha(alpha)),
            "coefficients": records,
            "notes": self.notes(),
        }

    def __repr__(self) -> str:
        return (
            f"<InferenceResults: {len(self.classes)} x {len(self.term_names)} coefficients, "
            f"reference={_py(self.reference)!r}, cov_type={self.cov_type!r}, "
            f"llf={self.llf:.6g}>"
        )

    def to_frame(self, alpha: float = 0.05) -> Any:
        """Long-format pandas DataFrame, one row per (class, term).

        Columns ``class, term, coef, std_err, z, p_value, ci_lower, ci_upper``.
        """
        return _long_frame(
            self.classes, self.term_names, self.params, self.bse, self.tvalues,
            self.pvalues, self.conf_int(alpha), value_name="coef",
        )  # fmt: skip

    # -- tests -------------------------------------------------------------------

    def wald_test(
        self,
        terms: str | list[str] | None = None,
        *,
        classes: Any = None,
        R: Any = None,
        value: Any = None,
    ) -> ChiSquareTest:
        """Wald test that a set of coefficients (or linear combinations) is zero.

        Either ``terms`` (the coefficients of these terms in every
        non-reference class, or in ``classes`` only, are all zero: with the
        default, "this feature does not matter") or a restriction matrix ``R``
        (``R @ params.ravel() == value``).

        Parameters
        ----------
        terms : str or list of str, optional
            Term names (see ``term_names``).
        classes : label or list of labels, optional
            Non-reference classes whose coefficients ``terms`` restricts.
        R : array-like of shape (n_restrictions, k_params) or (k_params,), optional
            Rows of linear combinations of ``params.ravel()``.
        value : array-like of shape (n_restrictions,), optional
            Right-hand side for ``R`` (zeros by default).

        Returns
        -------
        ChiSquareTest
            ``statistic = (R t - v)^T (R V R^T)^{-1} (R t - v)``, chi-square on
            ``df = n_restrictions`` under the null, with ``V = cov_params()``.
        """
        if (terms is None) == (R is None):
            raise ValueError("Pass either terms= (term names) or R= (a restriction matrix).")
        if terms is not None:
            R, description = self._term_restrictions(terms, classes)
            value = np.zeros(len(R))
        else:
            if classes is not None:
                raise ValueError("classes= applies to terms=, not to R=.")
            R = np.atleast_2d(np.asarray(R, dtype=np.float64))
            if R.ndim != 2 or R.shape[1] != self.k_params or R.shape[0] == 0:
                raise ValueError(
                    f"R must have shape (n_restrictions, {self.k_params}): one column per "
                    f"coefficient of params.ravel(); got shape {np.shape(R)}."
                )
            if not np.isfinite(R).all():
                raise ValueError("R contains NaN or infinity.")
            value = np.zeros(len(R)) if value is None else np.asarray(value, dtype=np.float64)
            if value.shape != (len(R),):
                raise ValueError(f"value must have shape ({len(R)},); got {value.shape}.")
            description = f"{len(R)} linear restrictions"
        V = self.cov_params()
        diff = R @ self.params.ravel() - value
        RVR = R @ V @ R.T
        singular = ValueError(
            "R @ cov_params() @ R.T is singular: the restrictions are linearly "
            "dependent; drop the redundant rows of R."
        )
        # judged on the correlation matrix: rounding can leave an exactly
        # singular RVR with a tiny positive Cholesky pivot
        scale = np.sqrt(np.clip(np.diag(RVR), 0.0, None))
        if not np.all(scale > 0):
            raise singular
        eig = np.linalg.eigvalsh(RVR / np.outer(scale, scale))
        if eig[0] <= 1e-10 * eig[-1]:
            raise singular
        try:
            c = linalg.cho_factor(RVR)
        except linalg.LinAlgError as exc:
            raise singular from exc
        statistic = float(diff @ linalg.cho_solve(c, diff))
        df = len(R)
        return ChiSquareTest(statistic, df, float(stats.chi2.sf(statistic, df)), description)

    def _term_restrictions(self, terms: Any, classes: Any) -> tuple[np.ndarray, str]:
        names = [terms] if isinstance(terms, str) else list(terms)
        if not names:
            raise ValueError("terms must name at least one term.")
        unknown = [t for t in names if t not in self.term_names]
        if unknown:
            raise ValueError(f"Unknown terms {unknown}; the terms are {self.term_names}.")
        class_list = list(self.classes)
        if classes is None:
            rows = list(range(len(class_list)))
        else:
            wanted = [classes] if np.ndim(classes) == 0 else list(classes)
            rows = []
            for c in wanted:
                hit = [i for i, k in enumerate(class_list) if k == c]
                if not hit:
                    extra = (
                        " (the reference class has no coefficients)" if c == self.reference else ""
                    )
                    raise ValueError(
                        f"Class {c!r} is not a non-reference class{extra}; they are "
                        f"{[_py(k) for k in class_list]}."
                    )
                rows.append(hit[0])
        T = len(self.term_names)
        cols = [r * T + self.term_names.index(t) for r in rows for t in names]
        R = np.zeros((len(cols), self.k_params))
        R[np.arange(len(cols)), cols] = 1.0
        where = "" if classes is None else f" in classes {[_py(class_list[r]) for r in rows]}"
        return R, f"{names} = 0{where}"

    def lr_test(self, restricted: InferenceResults) -> ChiSquareTest:
        """Likelihood-ratio test of this model against a nested ``restricted`` one.

        See :func:`lr_test`.
        """
        return lr_test(self, restricted)

    # -- marginal effects ----------------------------------------------------------

    def marginal_effects(self) -> MarginalEffects:
        """Average marginal effects of each feature on each class probability.

        ``effects[k, j] = mean_i dP(y = k | x_i) / dx_j`` (weighted by the
        sample weights), with delta-method standard errors from
        ``cov_params()``; the same as statsmodels' ``get_margeff(at="overall")``.
        Costs ``O(n K^2 p q)``: one more pass over the rows, computed on the
        first call.

        Returns
        -------
        MarginalEffects
        """
        if self._margeff is None:
            p = len(self.term_names) - int(self.fit_intercept)
            if p == 0:
                raise ValueError("The model has no features: there is no marginal effect.")
            if self._X is None:
                raise ValueError(
                    "marginal_effects() needs the rows in memory (a NumPy array, SciPy sparse "
                    "matrix or data frame); these results were computed from an out-of-core "
                    "collection. Run inference() on the rows in memory (for Dask: X.compute())."
                )
            V = self.cov_params()
            with _blas_threads(self.k_params):
                ame, J = marginal_effects_pass(
                    self._X,
                    self._weights,
                    self.params,
                    self._reference_code,
                    fit_intercept=self.fit_intercept,
                )
                cov = J @ V @ J.T
            self._margeff = MarginalEffects(
                ame,
                cov,
                self._all_classes,
                self.term_names[:p],
                self.dep_name,
                self.cov_type,
            )
        return self._margeff


_COV_NOTES = {
    "nonrobust": "Covariance: inverse of the observed information (assumes the model is "
    "correctly specified; sample weights are frequency weights).",
    "HC0": "Covariance: sandwich HC0 (robust to misspecified probabilities; independent "
    "rows; sample weights are frequency weights).",
    "HC1": "Covariance: sandwich HC1 = HC0 * N / (N - k) (robust to misspecified "
    "probabilities; independent rows).",
    "cluster": "Covariance: cluster-robust sandwich over {G} clusters, times "
    "G/(G-1) * (N-1)/(N-k) as statsmodels and Stata (rows may be correlated within a "
    "cluster, not across clusters).",
}


def lr_test(full: InferenceResults, restricted: InferenceResults) -> ChiSquareTest:
    """Likelihood-ratio test of a model against a nested, restricted one.

    ``statistic = 2 (full.llf - restricted.llf)``, chi-square on
    ``full.k_params - restricted.k_params`` degrees of freedom under the null
    that the restrictions hold. Both results must come from the same rows
    (``y`` and ``sample_weight``), the same classes and the same reference; the
    restricted model's terms must be among the full model's.

    Parameters
    ----------
    full, restricted : InferenceResults
        From :func:`inference` on each fitted model.

    Returns
    -------
    ChiSquareTest
    """
    for name, res in (("full", full), ("restricted", restricted)):
        if not isinstance(res, InferenceResults):
            raise TypeError(
                f"{name} must be an InferenceResults (from softmax.inference(clf, X, y)); "
                f"got {type(res).__name__}."
            )
    if full._rows_key != restricted._rows_key:
        raise ValueError(
            "The two results were computed on different rows (y or sample_weight differ); "
            "a likelihood-ratio test compares two models fitted to the same data."
        )
    if not np.array_equal(full._all_classes, restricted._all_classes):
        raise ValueError("The two models have different classes_.")
    missing = [t for t in restricted.term_names if t not in full.term_names]
    if missing:
        raise ValueError(
            f"The restricted model has terms {missing} that the full model lacks: the "
            "models are not nested."
        )
    df = full.k_params - restricted.k_params
    if df <= 0:
        raise ValueError(
            f"The full model has {full.k_params} coefficients and the restricted one "
            f"{restricted.k_params}; pass the larger model first."
        )
    statistic = 2.0 * (full.llf - restricted.llf)
    if statistic < -1e-6 * max(1.0, abs(full.llf)):
        raise ValueError(
            f"The restricted model fits better (llf {restricted.llf:.6g} > {full.llf:.6g}): "
            "the models are not nested, or one was not fitted to convergence."
        )
    if full._penalty_material or restricted._penalty_material:
        warnings.warn(
            "A likelihood-ratio statistic is chi-square distributed for maximum-likelihood "
            "fits; at least one of these is L2-penalised enough to move the likelihood. "
            "Refit both without a penalty.",
            UserWarning,
            stacklevel=2,
        )
    statistic = max(statistic, 0.0)
    return ChiSquareTest(
        statistic, int(df), float(stats.chi2.sf(statistic, df)), "likelihood ratio"
    )


# -- validation -----------------------------------------------------------------


def _blas_threads(n_coef: int) -> Any:
    """Hold BLAS to :data:`BLAS_THREADS` threads for small information matrices."""
    if n_coef < BLAS_THREADS_BELOW:
        return blas_limit(BLAS_THREADS)
    return contextlib.nullcontext()


#: What :func:`inference` reads of a model (the model's class is not imported:
#: this module sits below the estimator, whose ``summary()`` calls it).
_MODEL_PARAMS = ("C", "l1_ratio", "fit_intercept", "class_weight")


def _check_estimator(clf: Any) -> None:
    from sklearn.utils.validation import check_is_fitted

    params = clf.get_params(deep=False) if callable(getattr(clf, "get_params", None)) else {}
    if not callable(getattr(clf, "fit", None)) or not set(_MODEL_PARAMS) <= set(params):
        raise TypeError(
            f"inference() needs a fitted softmax.SoftmaxRegression; got {type(clf).__name__}."
        )
    check_is_fitted(clf)
    shape = (len(getattr(clf, "classes_", ())), getattr(clf, "n_features_in_", -1))
    if (
        np.shape(getattr(clf, "coef_", None)) != shape
        or np.shape(getattr(clf, "intercept_", None)) != shape[:1]
    ):
        raise TypeError(
            f"inference() needs a fitted softmax.SoftmaxRegression: one row of coef_ and "
            f"intercept_ per class; {type(clf).__name__} has coef_ of shape "
            f"{np.shape(getattr(clf, 'coef_', None))}."
        )
    l1_ratio = float(clf.l1_ratio)
    if l1_ratio > 0:
        raise ValueError(
            "inference() refuses L1 / elastic-net / group-lasso fits "
            f"(l1_ratio={l1_ratio:g}): the "
            "penalty chose which coefficients are zero using these same data, and standard "
            "errors that treat that choice as fixed in advance are too small and their "
            "p-values invalid (post-selection inference). Instead, refit the selected "
            "features without an L1 penalty on fresh data (sample splitting), or bootstrap "
            "the whole selection-and-fit procedure."
        )
    eps = float(params.get("label_smoothing", 0.0) or 0.0)
    if eps > 0:
        raise ValueError(
            f"inference() refuses fits with label_smoothing={eps:g}: they minimise a "
            "cross-entropy against smoothed targets, not the likelihood of the labels, so "
            "likelihood-based standard errors and tests do not apply. Refit with "
            "label_smoothing=0 (and C=inf for maximum likelihood)."
        )
    if not (np.isfinite(clf.coef_).all() and np.isfinite(clf.intercept_).all()):
        raise ValueError("The estimator's coef_ or intercept_ holds NaN or infinity; refit it.")
    if not clf.fit_intercept and np.any(clf.intercept_ != 0):
        raise ValueError(
            "fit_intercept is False but intercept_ is not zero: the parameters were changed "
            "after the fit (set_params); refit the model."
        )


def _check_cov_type(cov_type: Any) -> str:
    if isinstance(cov_type, str):
        for name in COV_TYPES:
            if cov_type.lower() == name.lower():
                return name
    raise ValueError(f"cov_type must be one of {list(COV_TYPES)}; got {cov_type!r}.")


def _encode_y(y: Any, classes: np.ndarray, n: int) -> np.ndarray:
    from sklearn.utils.validation import column_or_1d

    y = column_or_1d(np.asarray(y), warn=False)
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} labels but X has {n} rows; pass one label per row.")
    codes = np.searchsorted(classes, y)
    np.clip(codes, 0, len(classes) - 1, out=codes)
    unknown = classes[codes] != y
    if np.any(unknown):
        bad = np.unique(y[unknown])[:5].tolist()
        raise ValueError(
            f"y contains labels {bad} that the model was not fitted on (classes_ = "
            f"{classes.tolist()}); pass the labels of the rows the model was fitted on."
        )
    return codes.astype(np.intp, copy=False)


def _reference_code(reference: Any, classes: np.ndarray) -> int:
    hit = [k for k, c in enumerate(classes.tolist()) if c == _py(reference)]
    if not hit:
        raise ValueError(
            f"reference={reference!r} is not one of the classes {classes.tolist()}; pass one "
            "of them (or None for the first)."
        )
    return hit[0]


def _encode_groups(groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise ValueError(
            f"groups must be a 1-D array with one cluster label per row of X ({n}); got "
            f"shape {g.shape}."
        )
    if g.dtype.kind == "f" and not np.isfinite(g).all():
        raise ValueError("groups contains NaN or infinity; give every row a cluster label.")
    try:
        _, codes = np.unique(g, return_inverse=True)
    except TypeError as exc:
        raise ValueError(
            f"groups must hold labels of one sortable type (ints or strings); {exc}."
        ) from exc
    return codes.reshape(-1).astype(np.intp)


def _term_names(clf: Any) -> list[str]:
    names = getattr(clf, "feature_names_in_", None)
    if names is None:
        names = [f"x{j}" for j in range(clf.n_features_in_)]
    names = [str(n) for n in names]
    return [*names, INTERCEPT] if clf.fit_intercept else names


def _rows_key(data: Any, totals: np.ndarray, in_memory: bool) -> str:
    """A digest of the rows' labels and weights, for :func:`lr_test`'s same-rows check.

    Rows in memory: every label code and weight. Rows out of core (not read
    twice for this): the number of rows and the weighted class totals.
    """
    h = hashlib.sha256()
    if in_memory:
        n = int(data.n_samples)
        weights = np.ones(n) if data.weights is None else data.weights
        h.update(np.ascontiguousarray(data.y, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(weights, dtype=np.float64).tobytes())
    else:
        h.update(np.int64(data.n_samples).tobytes())
        h.update(np.ascontiguousarray(totals, dtype=np.float64).tobytes())
    return h.hexdigest()


def _singular_message(info_scaled: np.ndarray, term_names: list[str], classes: list) -> str:
    """Name the coefficients of the information's near-null direction."""
    try:
        _, v = linalg.eigh(info_scaled, lower=False, subset_by_index=[0, 0])
        vec = np.abs(v[:, 0])
        T = len(term_names)
        top = np.argsort(vec)[::-1][: min(6, vec.size)]
        top = [i for i in top if vec[i] > 0.1 * vec.max()]
        named = ", ".join(f"{term_names[i % T]} (class {classes[i // T]!r})" for i in top)
        where = f" The near-dependent coefficients: {named}."
    except Exception:  # pragma: no cover - only decorates an error message
        where = ""
    return (
        "The information matrix is singular: some coefficients are not identified by these "
        "data (collinear or constant features, a feature that is zero in every row of a "
        f"class, or too few rows).{where} Drop or combine the features involved, or fit "
        "with an L2 penalty (a finite C)."
    )


# -- row passes of marginal effects ------------------------------------------


def zero_lower(A: np.ndarray, block: int = 512) -> np.ndarray:
    """Set the strictly lower triangle of square ``A`` to zero, in place, by blocks."""
    m = A.shape[0]
    for a in range(0, m, block):
        b = min(m, a + block)
        A[b:, a:b] = 0.0
        D = A[a:b, a:b]
        D[np.tril_indices(b - a, -1)] = 0.0
    return A


def marginal_effects_pass(
    X: Any,
    weights: np.ndarray,
    theta: np.ndarray,
    reference: int,
    *,
    fit_intercept: bool,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Average marginal effects on every class probability and their Jacobian.

    With ``D_{ikj} = theta_{kj} - sum_l p_{il} theta_{lj}`` (feature ``j``, all
    ``K`` classes, the reference row of ``theta`` zero), the effect of feature
    ``j`` on ``P(y = k | x_i)`` is ``p_{ik} D_{ikj}``; its weighted average is

    .. math::

        \mathrm{AME}_{kj} = \frac{1}{N} \sum_i s_i p_{ik} D_{ikj}, \qquad N = \sum_i s_i,

    and its derivative with respect to ``theta_{mr}`` (``m`` a non-reference
    class, ``r`` a term) is the average of

    .. math::

        p_{ik} \big[(\delta_{km} - p_{im}) D_{ikj} - p_{im} D_{imj}\big]
        \tilde x_{ir} + p_{ik} (\delta_{km} - p_{im}) \delta_{jr}.

    The term quadratic in the probabilities, ``sum_i s p_k p_m (D_k + D_m)
    x``, is one GEMM per block of ``(rows, K p)`` by ``(rows, (K - 1) q)``:
    the whole pass costs ``O(n K^2 p q)``, computed only when asked for.

    Returns
    -------
    ame : ndarray of shape (K, p)
    jacobian : ndarray of shape (K * p, (K - 1) * q)
        Derivative of ``ame.ravel()`` with respect to the flattened ``theta``.
    """
    n, p = X.shape
    Kr, q = theta.shape
    K = Kr + 1
    theta_full = np.insert(theta, reference, 0.0, axis=0)  # (K, q), reference row 0
    T = theta_full[:, :p]  # (K, p) slopes
    others = np.array([k for k in range(K) if k != reference])
    N = float(weights.sum())
    ame = np.zeros((K, p))
    J = np.zeros((K, p, Kr, q))
    step = _information_rows(n, K * max(p, q))
    xbuf = np.empty((step, q))
    for start in range(0, n, step):
        stop = min(n, start + step)
        Xt = _dense_rows(_row_block(X, start, stop), fit_intercept, xbuf)
        sb = weights[start:stop]
        Z = Xt @ theta_full.T
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)  # (r, K)
        Tbar = P @ T  # (r, p): sum_l p_l theta_l
        sP = P * sb[:, None]
        ame += sP.sum(axis=0)[:, None] * T - sP.T @ Tbar
        Pm = P[:, others]  # (r, Kr)
        # A_i,(k,j) = s p_ik D_ikj ; B_i,(m,r) = p_im x_ir
        D = T[None, :, :] - Tbar[:, None, :]  # (r, K, p)
        A = (sP[:, :, None] * D).reshape(-1, K * p)
        B = (Pm[:, :, None] * Xt[:, None, :]).reshape(-1, Kr * q)
        # - sum_i s p_k p_m D_k x  (k, j, m, r)
        J -= (A.T @ B).reshape(K, p, Kr, q)
        # - sum_i s p_k p_m D_m x = -(A^T B) with (k,j) <-> (m,j) for the K-1 m's
        Am = A.reshape(-1, K, p)[:, others, :].reshape(-1, Kr * p)
        Bk = (P[:, :, None] * Xt[:, None, :]).reshape(-1, K * q)
        J -= (Bk.T @ Am).reshape(K, q, Kr, p).transpose(0, 3, 2, 1)
        # delta_km sum_i s p_k D_k x
        for mi, k in enumerate(others):
            J[k, :, mi, :] += A.reshape(-1, K, p)[:, k, :].T @ Xt
        # delta_jr (delta_km sum s p_k - sum s p_k p_m)
        S = sP.T @ Pm  # (K, Kr)
        for mi, k in enumerate(others):
            S[k, mi] -= sP[:, k].sum()
        for j in range(p):
            J[:, j, :, j] -= S
    ame /= N
    J /= N
    return ame, J.reshape(K * p, Kr * q)


# -- the entry points ---------------------------------------------------------------


def check_separation(
    X: Any,
    y: Any,
    sample_weight: Any = None,
    *,
    fit_intercept: bool = True,
    feature_names: Any = None,
    reference: Any = None,
) -> SeparationResult:
    """Detect complete or quasi-complete separation of multinomial data.

    Solves a linear program (see :mod:`softmax._separation`): the data are
    separated, and the maximum-likelihood estimate does not exist, exactly
    when some direction of the coefficients makes every row's log-odds of
    its own class against every other class non-decreasing and some
    increasing. The result names the classes and the features of a sparse
    separating direction.

    Parameters
    ----------
    X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), default=None
        Only whether a weight is zero matters (those rows are left out).
    fit_intercept : bool, default=True
        Whether the model has intercepts.
    feature_names : list of str, default=None
        Names for the result; the data frame's columns, else ``x0, x1, ...``.
    reference : label, default=None
        Reference class of the returned direction (the first class by default).

    Returns
    -------
    SeparationResult
        ``bool(result)`` is True when separated; ``result.message()`` explains.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    >>> y = np.array([0, 0, 1, 1, 2, 2])   # x < 1.5 <=> class 0, x > 3.5 <=> class 2
    >>> res = check_separation(X, y)
    >>> res.separated, res.complete, res.features
    (True, True, ['x0', 'intercept'])
    """
    from sklearn.utils.validation import check_array, column_or_1d

    from softmax._validation import check_sample_weight, encode_labels

    if feature_names is None and hasattr(X, "columns"):
        feature_names = [str(c) for c in X.columns]
    X = check_array(X, accept_sparse="csr", dtype=(np.float64, np.float32))
    y = column_or_1d(np.asarray(y), warn=False)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels but X has {X.shape[0]} rows.")
    classes, codes = encode_labels(y)
    if len(classes) < 2:
        raise ValueError(f"y must hold at least 2 classes; got {classes.tolist()}.")
    weights = check_sample_weight(sample_weight, X.shape[0])
    names = (
        [f"x{j}" for j in range(X.shape[1])]
        if feature_names is None
        else [str(n) for n in feature_names]
    )
    if len(names) != X.shape[1]:
        raise ValueError(f"feature_names has {len(names)} names for {X.shape[1]} features.")
    if fit_intercept:
        names = [*names, INTERCEPT]
    ref = 0 if reference is None else _reference_code(reference, classes)
    return separation_lp(X, codes, weights, classes, ref, names, fit_intercept=bool(fit_intercept))


def inference(
    clf: Any,
    X: Any,
    y: Any,
    sample_weight: Any = None,
    cov_type: str = "nonrobust",
    groups: Any = None,
    reference: Any = None,
    *,
    check_separation: bool | str = "auto",
) -> InferenceResults:
    """Standard errors, tests and a summary table for a fitted SoftmaxRegression.

    Parameters
    ----------
    clf : SoftmaxRegression
        A fitted estimator with ``l1_ratio=0`` (L1 fits are refused: see
        Raises). Only its ``coef_``, ``intercept_``, ``classes_``, ``C``,
        ``reference_class`` and ``class_weight`` are read.
    X : {array-like, sparse matrix, data frame, Dask collection, FileSource}
        The rows the model was fitted on, of shape (n_samples, n_features)
        (same features, same names). Rows out of core (a Dask array or
        frame, a ``softmax.streaming.FileSource``) are read by their backend
        in one pass; the separation check, ``cov_type="cluster"`` and
        :meth:`InferenceResults.marginal_effects` need them in memory.
    y : array-like of shape (n_samples,)
        Their labels, each one of ``clf.classes_`` (None for a file source
        that carries its target).
    sample_weight : array-like of shape (n_samples,), default=None
        The weights of the fit, read as frequency weights: integer weights
        give exactly the results of the duplicated rows.
    cov_type : {"nonrobust", "HC0", "HC1", "cluster"}, default="nonrobust"
        See the module docstring or ``docs/inference.md`` for what each assumes.
    groups : array-like of shape (n_samples,), default=None
        Cluster labels, required by (and only for) ``cov_type="cluster"``.
    reference : label, default=None
        Reference class; None takes the estimator's ``reference_class``, else
        the first of ``classes_``.
    check_separation : bool or "auto", default="auto"
        Run the separation linear program (see :func:`check_separation`) and
        warn with a :class:`SeparationWarning` when the data are separated;
        ``"auto"`` runs it when it is small (at most
        :data:`SEPARATION_AUTO_MAX_NNZ` non-zeros) and the rows are in memory.

    Returns
    -------
    InferenceResults

    Raises
    ------
    sklearn.exceptions.NotFittedError
        ``clf`` is not fitted.
    TypeError
        ``clf`` is not a SoftmaxRegression.
    ValueError
        An L1 / elastic-net fit; ``X`` with another number of features (or
        other names); ``y`` of the wrong length or with labels the model was
        not fitted on; a class without rows; bad weights; an unknown
        ``cov_type`` or ``reference``; ``groups`` missing, of the wrong length
        or with fewer than 2 clusters; ``class_weight`` with
        ``cov_type="nonrobust"``; a singular information matrix;
        ``cov_type="cluster"`` or ``check_separation=True`` for rows out of
        core.

    Warns
    -----
    SeparationWarning
        The data are separated: the maximum-likelihood estimate does not exist.
    UserWarning
        The coefficients are not at the optimum for these data.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from softmax import SoftmaxRegression, inference
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SoftmaxRegression(C=np.inf).fit(X[:, :1], y)  # sepal length: classes overlap
    >>> res = inference(clf, X[:, :1], y)
    >>> res.params.shape, res.term_names, res.penalized
    ((2, 2), ['x0', 'intercept'], False)
    >>> bool((res.bse > 0).all())
    True
    """
    _check_estimator(clf)
    cov_type = _check_cov_type(cov_type)
    if check_separation not in (True, False, "auto"):
        raise ValueError(
            f"check_separation must be True, False or 'auto'; got {check_separation!r}."
        )
    dep_name = getattr(y, "name", None)
    dep_name = dep_name if isinstance(dep_name, str) and dep_name else "y"
    classes = np.asarray(clf.classes_)
    K = len(classes)
    fit_intercept = bool(clf.fit_intercept)
    if clf.class_weight is not None and cov_type == "nonrobust":
        raise ValueError(
            "The model was fitted with class_weight, which reweights rows by class: the "
            "fit maximises a pseudo-likelihood whose inverse information is not the "
            "covariance of the estimate. Use cov_type='HC0' (the sandwich is valid for "
            "weighted estimating equations), or refit with class_weight=None."
        )
    if reference is None:
        reference = getattr(clf, "reference_class", None)
    ref = 0 if reference is None else _reference_code(reference, classes)
    data, rows_in_memory = _row_data(clf, X, y, sample_weight, fit_intercept)
    n = int(data.n_samples)
    group_codes = None
    n_groups = None
    if cov_type == "cluster":
        if groups is None:
            raise ValueError("cov_type='cluster' needs groups=: one cluster label per row.")
        if not rows_in_memory:
            raise ValueError(
                "cov_type='cluster' visits the rows cluster by cluster: it needs the rows in "
                f"memory, not a {type(X).__name__}; use 'HC0' or load the rows."
            )
        group_codes = _encode_groups(groups, n)
        weights = np.ones(n) if data.weights is None else data.weights
        n_groups = int(np.count_nonzero(np.bincount(group_codes, weights=weights) > 0))
        if n_groups < 2:
            raise ValueError(
                f"cov_type='cluster' needs at least 2 clusters with positive weight; got "
                f"{n_groups}."
            )
    elif groups is not None:
        raise ValueError(f"groups= is only used by cov_type='cluster' (got {cov_type!r}).")
    if check_separation is True and not rows_in_memory:
        raise ValueError(
            "check_separation=True needs the rows in memory (the linear program is built "
            "from them); pass check_separation=False or 'auto' for rows out of core."
        )

    term_names = _term_names(clf)
    p = int(data.n_features)
    q = p + int(fit_intercept)
    others = [k for k in range(K) if k != ref]
    non_ref = classes[others]
    coef = np.asarray(clf.coef_, dtype=np.float64)
    full = np.concatenate(
        [coef, np.asarray(clf.intercept_, dtype=np.float64)[:, None]] if fit_intercept else [coef],
        axis=1,
    )
    theta = (full - full[ref])[others]  # (K - 1, q)
    C = float(clf.C)
    penalized = bool(np.isfinite(C))
    N = float(data.weight_sum)

    if rows_in_memory:  # (out of core: from the information pass)
        _check_totals(np.bincount(data.y, weights=data.weights, minlength=K), classes)
    with _blas_threads((K - 1) * q):
        # Separation first: on separated data the information is (nearly) singular,
        # and the warning explains what the standard errors would not.
        separation = None
        if check_separation and rows_in_memory:
            separation = separation_lp(
                data.X, data.y, data.weights, classes, ref, term_names,
                fit_intercept=fit_intercept,
                max_nnz=None if check_separation is True else SEPARATION_AUTO_MAX_NNZ,
            )  # fmt: skip
            if separation is not None and separation.separated:
                extra = (
                    f" This fit is L2-penalised (C={C:g}): its estimates are finite only because "
                    "of the penalty, which alone sets them along the separating direction."
                    if penalized
                    else ""
                )
                warnings.warn(separation.message() + extra, SeparationWarning, stacklevel=2)

        meat_kind = {"HC0": "hc", "HC1": "hc", "cluster": "cluster"}.get(cov_type)
        # rows beyond ~1e154 overflow X^T W X; which floating-point flag the BLAS
        # raises (overflow or invalid) varies by CPU kernel, and the finiteness
        # check below turns either into one clear error
        with np.errstate(over="ignore", invalid="ignore"):
            sums = data.information(full, ref, meat=meat_kind, groups=group_codes)
        totals = sums.class_totals
        _check_totals(totals, classes)
        info, sums.information = sums.information, None  # one reference: freed after Cholesky
        score = sums.score.copy()
        penalty_material = False
        if penalized:
            # curvature and gradient of the fit's penalty (1 / 2C) sum ||w||^2 in the
            # reported coordinates: Q / C per feature (see _penalty_curvature)
            Q = _penalty_curvature(K, ref, _fitted_reference(clf)) / C
            for j in range(p):
                idx = np.arange(K - 1) * q + j
                info[np.ix_(idx, idx)] += Q
            score.reshape(K - 1, q)[:, :p] -= Q @ theta[:, :p]
            if p:  # (np.diag is a view: keep no reference to info)
                smallest = float(np.diag(info).reshape(K - 1, q)[:, :p].min())
                penalty_material = smallest * 1e-8 < float(np.abs(Q).max())
        # only the upper triangle of info is ever read (Cholesky, eigh)
        d = np.sqrt(np.diag(info).copy())
        if not np.isfinite(d).all():
            # rows beyond ~1e154: X^T W X overflows (the fit itself rescales them)
            largest = float(abs(data.X).max()) if rows_in_memory and data.X.size else math.nan
            exponent = math.frexp(largest)[1] if math.isfinite(largest) else None
            advice = (
                f"divide X by 2**{exponent} (exact: a power of two), refit, and multiply the "
                f"weights' estimates and standard errors by 2**-{exponent}"
                if exponent is not None
                else "divide X by a power of two and refit"
            )
            raise ValueError(
                f"The information matrix overflows float64: the features reach {largest:.3g}. "
                f"To get standard errors, {advice}."
            )
        if not np.all(d > 0):
            zero = [
                f"{term_names[i % q]} (class {_py(non_ref[i // q])!r})"
                for i in np.flatnonzero(~(d > 0))
            ]
            raise ValueError(
                f"The information matrix has a zero on its diagonal for {zero[:5]}: the term is "
                "zero in every row with positive weight, so its coefficient is not identified; "
                "drop it."
            )
        info /= d[:, None]
        info /= d[None, :]
        try:
            factor, _ = linalg.cho_factor(info, lower=False, overwrite_a=False, check_finite=False)
        except linalg.LinAlgError:
            message = _singular_message(info, term_names, [_py(c) for c in non_ref])
            if separation is not None and separation.separated:
                message = "The data are separated (see the SeparationWarning). " + message
            raise ValueError(message) from None
        del info
        # (the factor's lower triangle holds leftovers: LAPACK reads only the upper)
        # the diagonal of the inverse from the triangular inverse:
        # diag((U^T U)^{-1}) = squared row norms of U^{-1}
        Uinv, status = lapack.dtrtri(factor, lower=0)
        if status != 0:  # pragma: no cover - a successful Cholesky has a non-zero diagonal
            raise np.linalg.LinAlgError(f"dtrtri failed (info={status})")
        zero_lower(Uinv)  # LAPACK leaves the input's lower triangle there
        var_model = np.einsum("ij,ij->i", Uinv, Uinv) / d**2
        del Uinv
        step = linalg.cho_solve((factor, False), score / d) / d
        newton_step_se = float(np.max(np.abs(step) / np.sqrt(var_model)))

        cov = None
        if meat_kind is None:
            var = var_model
        else:
            B, sums.meat = mirror_upper(sums.meat), None  # one reference: freed below
            B /= d[:, None]
            B /= d[None, :]
            Y = linalg.cho_solve((factor, False), B, overwrite_b=True)  # in B's memory
            del B
            cov = linalg.cho_solve((factor, False), Y.T, overwrite_b=True)
            del Y
            mirror_upper(cov)  # equal up to rounding; `cov += cov.T` would copy
            cov /= d[:, None]
            cov /= d[None, :]
            k = (K - 1) * q
            if cov_type == "HC1":
                cov *= N / (N - k)
            elif cov_type == "cluster":
                cov *= n_groups / (n_groups - 1.0) * (N - 1.0) / (N - k)
            var = np.diag(cov).copy()
        bse = np.sqrt(var).reshape(K - 1, q)

        if fit_intercept:
            with np.errstate(divide="ignore", invalid="ignore"):
                share = totals / N
                llnull = float(np.sum(np.where(totals > 0, totals * np.log(share), 0.0)))
        else:
            llnull = -N * math.log(K)

        if newton_step_se > OPTIMALITY_WARN_SE and not (separation and separation.separated):
            warnings.warn(
                f"The coefficients are not at the optimum of the likelihood of these data: a "
                f"Newton step moves them by up to {newton_step_se:.3g} standard errors. Pass the "
                f"same X, y and sample_weight the model was fitted on, or refit with a smaller "
                f"tol (now {clf.tol!r}).",
                UserWarning,
                stacklevel=2,
            )

    return InferenceResults(
        params=theta,
        bse=bse,
        classes=non_ref,
        reference=_py(classes[ref]),
        term_names=term_names,
        cov_type=cov_type,
        llf=float(sums.loglik),
        llnull=llnull,
        nobs=N,
        df_model=float((K - 1) * p),
        df_resid=N - (K - 1) * q,
        n_groups=n_groups,
        penalized=penalized,
        C=C,
        converged=bool(getattr(clf, "converged_", True)),
        newton_step_se=newton_step_se,
        separation=separation,
        dep_name=dep_name,
        fit_intercept=fit_intercept,
        cov=cov,
        factor=factor if cov is None else None,  # a sandwich needs no more solves
        scale=d,
        X=data.X if rows_in_memory else None,
        weights=(np.ones(n) if data.weights is None else data.weights) if rows_in_memory else None,
        _all_classes=classes,
        _reference_code=ref,
        _rows_key=_rows_key(data, totals, rows_in_memory),
        _penalty_material=penalty_material,
    )


def _row_data(
    clf: Any, X: Any, y: Any, sample_weight: Any, fit_intercept: bool
) -> tuple[Any, bool]:
    """The rows as a backend that answers ``information``; and whether they are in memory.

    Rows in memory are validated here against the model (features, names,
    labels, weights) and wrapped in :class:`~softmax.backends.memory.InMemoryData`;
    a Dask collection or file source goes to its backend's ``build_row_data``
    with the model's classes (labels outside them are refused there).
    """
    import importlib

    from softmax._validation import check_sample_weight, row_weights, validate_data
    from softmax.backends import external_backend
    from softmax.backends._base import Capability

    classes = np.asarray(clf.classes_)
    backend = external_backend(X)
    if backend is None:
        X = validate_data(
            clf, X, reset=False, accept_sparse="csr", dtype=(np.float64, np.float32), order="C"
        )
        codes = _encode_y(y, classes, X.shape[0])
        if clf.class_weight is not None:
            weights = row_weights(codes, classes, sample_weight, clf.class_weight)
        else:
            weights = check_sample_weight(sample_weight, X.shape[0])
        from softmax.backends.memory import InMemoryData

        data = InMemoryData(X, codes, weights, classes, fit_intercept=fit_intercept)
        return data, True
    module = importlib.import_module(backend)
    data = module.build_row_data(
        X,
        y,
        sample_weight=sample_weight,
        classes=classes,
        class_weight=clf.class_weight,
        fit_intercept=fit_intercept,
        dtype=None,
    )
    if int(data.n_features) != int(clf.n_features_in_):
        raise ValueError(
            f"X has {data.n_features} features, but the model was fitted with "
            f"{clf.n_features_in_} features."
        )
    names = getattr(clf, "feature_names_in_", None)
    if (
        names is not None
        and data.feature_names is not None
        and [str(a) for a in data.feature_names] != [str(b) for b in names]
    ):
        raise ValueError(
            "The feature names of X differ from those the model was fitted on "
            f"({list(names)[:5]}...)."
        )
    if Capability.INFORMATION not in data.capabilities:
        raise TypeError(
            f"inference() needs rows whose backend answers 'information'; the "
            f"{type(data).__name__} backend does not."
        )
    return data, False


def _check_totals(totals: np.ndarray, classes: np.ndarray) -> None:
    """ValueError when a class has no rows with positive weight."""
    if np.any(totals <= 0):
        empty = classes[totals <= 0].tolist()
        raise ValueError(
            f"Classes {empty} have no rows with positive weight in y: their coefficients "
            "are not identified (the likelihood pushes their probability to 0). Pass the "
            "rows the model was fitted on, or refit without those classes."
        )


def _fitted_reference(clf: Any) -> int | None:
    """The code of the estimator's ``reference_class`` (the parametrisation it was fitted in)."""
    ref = getattr(clf, "reference_class", None)
    return None if ref is None else _reference_code(ref, np.asarray(clf.classes_))


def _penalty_curvature(K: int, reported: int, fitted: int | None) -> np.ndarray:
    """The L2 penalty's curvature per feature in the reported coordinates, ``(K - 1, K - 1)``.

    The reported coefficients ``theta`` are the rows of ``beta - beta_r`` other
    than the reported reference ``r``; the fit penalised ``sum_k ||w_k||^2 / 2``
    over its own rows: every class's, with the common shift profiled out (a
    symmetric fit: ``fitted`` None), or those of the classes other than the
    fitted reference ``r0`` (``w = beta - beta_r0``). With ``E`` the map from
    ``theta`` to the penalised rows, the curvature is ``E^T E``:
    ``I - 11^T / K`` and ``I`` (``r = r0``) in the two plain cases.
    """
    S = np.zeros((K, K - 1))  # embeds theta as K rows, 0 at the reported reference
    S[[k for k in range(K) if k != reported], np.arange(K - 1)] = 1.0
    if fitted is None:
        E = (np.eye(K) - 1.0 / K) @ S  # centred: the shift profiled out
    else:
        E = (np.eye(K) - np.outer(np.ones(K), np.eye(K)[fitted])) @ S  # beta - beta_r0
    return E.T @ E
