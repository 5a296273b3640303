"""Softmax normalisation on data with outliers, beside StandardScaler and RobustScaler.

Three classes, six features on very different scales, and gross errors: about
2% of the entries (so about one row in nine) get a heavy-tailed (Cauchy) error
added, in the training rows and in the test rows alike. Each scaler is put in
front of the same softmax regression, and the test accuracy and log loss are
printed as a markdown table, for all test rows and for the test rows without
a gross error.

Run from the repository root::

    python examples/softmax_scaler_outliers.py

It writes ``docs/figures/scaler_outliers.png`` (the transformed features) and
``docs/figures/scaler_curves.png`` (the squashing functions) and prints the
table shown in ``docs/preprocessing.md``. Needs matplotlib
(``pip install softmax[plot]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler

from softmax.preprocessing import SoftmaxScaler

SEED = 0
N_TRAIN, N_TEST, N_FEATURES, N_CLASSES = 2000, 2000, 6, 3
CONTAMINATION = 0.02  # fraction of entries with a gross error
ERROR_SIZE = 20.0  # Cauchy scale of the gross errors, in inlier standard deviations
UNITS = np.array([1.0, 10.0, 100.0, 0.1, 5.0, 1000.0])  # each feature's unit
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "scaler_outliers.md"


def classifier():
    """softmax.SoftmaxRegression when it is available, else scikit-learn's."""
    try:
        from softmax import SoftmaxRegression

        return SoftmaxRegression(C=1.0), "softmax.SoftmaxRegression(C=1.0)"
    except ImportError:  # pragma: no cover - only before the estimator exists
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0), "sklearn LogisticRegression(C=1.0)"


def make_data(rng: np.random.Generator, n: int, means: np.ndarray):
    """Gaussian classes plus sparse heavy-tailed gross errors.

    Returns X of shape (n, N_FEATURES), the same rows without the gross
    errors, y of shape (n,), and a boolean mask of shape (n,) marking the rows
    with at least one gross error.
    """
    y = rng.integers(0, N_CLASSES, size=n)
    X_clean = means[y] + rng.normal(size=(n, N_FEATURES))
    hit = rng.random(X_clean.shape) < CONTAMINATION
    X = X_clean.copy()
    X[hit] += ERROR_SIZE * rng.standard_cauchy(hit.sum())
    return X * UNITS, X_clean * UNITS, y, hit.any(axis=1)


SCALERS = {
    "none": None,
    "StandardScaler": StandardScaler(),
    "RobustScaler": RobustScaler(),
    "SoftmaxScaler()": SoftmaxScaler(),
    'SoftmaxScaler(centre="median", spread="iqr")': SoftmaxScaler(centre="median", spread="iqr"),
    'SoftmaxScaler(method="tanh", centre="median", spread="iqr")': SoftmaxScaler(
        method="tanh", centre="median", spread="iqr"
    ),
    'SoftmaxScaler(centre="median", spread="iqr", width=1/pi)': SoftmaxScaler(
        centre="median", spread="iqr", width=1 / np.pi
    ),
}


def evaluate(pipe, X_train, y_train, X_test, y_test, clean_test, name) -> list[str]:
    """Fit one pipeline and return its table row."""
    pipe.fit(X_train, y_train)
    proba = pipe.predict_proba(X_test)
    pred = pipe.classes_[proba.argmax(axis=1)]
    return [
        name,
        f"{accuracy_score(y_test, pred):.3f}",
        f"{accuracy_score(y_test[clean_test], pred[clean_test]):.3f}",
        f"{log_loss(y_test, proba, labels=pipe.classes_):.3f}",
        f"{log_loss(y_test[clean_test], proba[clean_test], labels=pipe.classes_):.3f}",
    ]


def compare(train, test) -> tuple[list[list[str]], str]:
    """Fit scaler + classifier for each scaler; one table row each.

    ``train`` and ``test`` are the tuples returned by :func:`make_data`.
    """
    X_train, X_train_clean, y_train, _ = train
    X_test, X_test_clean, y_test, dirty_test = test
    rows = []
    for name, scaler in SCALERS.items():
        clf, clf_name = classifier()
        pipe = make_pipeline(clf) if scaler is None else make_pipeline(scaler, clf)
        rows.append(evaluate(pipe, X_train, y_train, X_test, y_test, ~dirty_test, f"`{name}`"))
    # The ceiling: the same rows without their gross errors.
    clf, _ = classifier()
    rows.append(
        evaluate(
            make_pipeline(StandardScaler(), clf),
            X_train_clean,
            y_train,
            X_test_clean,
            y_test,
            ~dirty_test,
            "*reference: `StandardScaler` on the rows without gross errors*",
        )
    )
    return rows, clf_name


def markdown_table(rows: list[list[str]]) -> str:
    header = [
        "scaler",
        "accuracy",
        "accuracy (clean rows)",
        "log loss",
        "log loss (clean rows)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _share(values: np.ndarray) -> float:
    """How much of the axis the inliers get: the central 98% of the values
    against their full range."""
    lo, hi = np.percentile(values, [1, 99])
    return float((hi - lo) / (values.max() - values.min()))


def plot_outliers(X, y, dirty, path: Path) -> None:
    """Two features after each scaler: histogram of one, scatter of both."""
    import matplotlib.pyplot as plt

    shown = {
        "StandardScaler()": StandardScaler(),
        "RobustScaler()": RobustScaler(),
        "SoftmaxScaler()": SoftmaxScaler(),
        'SoftmaxScaler(centre="median",\nspread="iqr")': SoftmaxScaler(
            centre="median", spread="iqr"
        ),
    }
    colours = np.array(["#1f77b4", "#ff7f0e", "#2ca02c"])
    fig, axes = plt.subplots(2, 4, figsize=(15, 7.6), layout="constrained")
    for col, (name, scaler) in enumerate(shown.items()):
        Xt = scaler.fit_transform(X)
        a, b = Xt[:, 0], Xt[:, 1]

        ax = axes[0, col]
        ax.hist(a, bins=80, color="#555555")
        ax.set_yscale("log")
        ax.set_title(name if "\n" in name else name + "\n", fontsize=10.5)
        ax.set_xlabel(
            f"feature 0 after scaling\n(central 98% of rows: {_share(a):.1%} of the axis)"
        )
        ax = axes[1, col]
        # Rows with a gross error first, so the clean rows stay visible on top.
        ax.scatter(a[dirty], b[dirty], s=14, c=colours[y[dirty]], marker="x", linewidths=0.8)
        ax.scatter(a[~dirty], b[~dirty], s=4, c=colours[y[~dirty]], alpha=0.5, linewidths=0)
        ax.set_xlabel("feature 0 after scaling")
        ax.set_ylabel(f"feature 1 after scaling\n(central 98%: {_share(b):.1%} of the axis)")
    axes[0, 0].set_ylabel("rows (log scale)")
    fig.suptitle(
        "Features with gross errors after each scaler "
        "(colour: class; x: a row with a gross error)",
        fontsize=12,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(path: Path) -> None:
    """The two squashes against z, and the logistic squash for several widths."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    z = np.linspace(-6, 6, 601)
    left.plot(z, 1 / (1 + np.exp(-z)), label=r"logistic $1/(1+e^{-z})$", color="#1f77b4")
    left.plot(
        z,
        np.tanh(z / 2),
        label=r"tanh form $(1-e^{-z})/(1+e^{-z}) = \tanh(z/2)$",
        color="#d62728",
    )
    left.plot(z, 0.5 + z / 4, ls=":", color="#1f77b4", lw=1, label="slope at the centre")
    left.plot(z, z / 2, ls=":", color="#d62728", lw=1)
    left.axvspan(-1, 1, color="0.9", zorder=0, label=r"$|z| \leq 1$: within width spreads")
    left.set_ylim(-1.1, 1.1)
    left.set_xlabel(r"$z = (x - \mathrm{centre}) / (\mathrm{width} \cdot \mathrm{spread})$")
    left.set_ylabel(r"$x'$")
    left.set_title("The two squashes")
    left.legend(fontsize=8, loc="lower right")

    x = np.linspace(-6, 6, 601)  # in spreads from the centre
    for width, label in [
        (1 / np.pi, r"width = $1/\pi$ (Pyle's $\lambda = 2$)"),
        (0.5, "width = 0.5"),
        (1.0, "width = 1 (default)"),
        (2.0, "width = 2"),
    ]:
        right.plot(x, 1 / (1 + np.exp(-x / width)), label=label)
    right.set_xlabel(r"$(x - \mathrm{centre}) / \mathrm{spread}$")
    right.set_ylabel(r"$x'$ (logistic)")
    right.set_title("Width: how many spreads one unit of z spans")
    right.legend(fontsize=8, loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    rng = np.random.default_rng(SEED)
    means = rng.normal(size=(N_CLASSES, N_FEATURES))
    train = make_data(rng, N_TRAIN, means)
    test = make_data(rng, N_TEST, means)

    rows, clf_name = compare(train, test)
    report = (
        f"classifier: {clf_name}; {N_TRAIN} training and {N_TEST} test rows, "
        f"{train[3].mean():.1%} / {test[3].mean():.1%} of them with a gross error "
        f"(`python examples/softmax_scaler_outliers.py`, seed {SEED})\n\n"
        + markdown_table(rows)
        + "\n"
    )
    print(report)
    # docs/preprocessing.md quotes this file (benchmarks/sync_docs.py copies it there).
    RESULTS.write_text(report, encoding="utf-8")

    FIGURES.mkdir(parents=True, exist_ok=True)
    plot_outliers(train[0], train[2], train[3], FIGURES / "scaler_outliers.png")
    plot_curves(FIGURES / "scaler_curves.png")
    print(f"wrote {RESULTS}, {FIGURES / 'scaler_outliers.png'}, {FIGURES / 'scaler_curves.png'}")


if __name__ == "__main__":
    main()
