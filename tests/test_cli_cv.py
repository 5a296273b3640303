"""``softmax fit ... --cv K``: C chosen by cross-validation from the command line.

Run through the entry point (``softmax.cli.main``); the chosen ``C``, the
mean fold scores and the saved model are compared with
:class:`~softmax.SoftmaxRegressionCV` fitted in Python on the same rows and
folds (``cv=K`` is ``StratifiedKFold(K)`` in both).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from softmax import SoftmaxRegression, SoftmaxRegressionCV, load_model
from softmax.cli import main

pd = pytest.importorskip("pandas")


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory):
    """600 of scikit-learn's digits as CSV (pixels / 16, 64 feature columns, a label column)."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16, y[:600]
    frame = pd.DataFrame(X, columns=[f"px{j}" for j in range(64)])
    frame["digit"] = y
    path = tmp_path_factory.mktemp("cv") / "digits.csv"
    frame.to_csv(path, index=False)
    # the rows as the CLI reads them back (CSV round trip)
    back = pd.read_csv(path)
    return path, back.drop(columns="digit"), back["digit"].to_numpy()


def mean_and_se(model):
    scores = model.scores_[:, 0, :]
    return scores.mean(axis=0), scores.std(axis=0, ddof=1) / np.sqrt(scores.shape[0])


@pytest.mark.parametrize(
    ("options", "kwargs"),
    [
        (["--Cs", "7"], {"Cs": 7}),
        (["--Cs", "0.01,0.1,1,10", "--one-se"], {"Cs": [0.01, 0.1, 1, 10], "select": "1se"}),
        (["--Cs", "6", "--scoring", "accuracy"], {"Cs": 6, "scoring": "accuracy"}),
        (["--Cs", "5", "--label-smoothing", "0.1"], {"Cs": 5, "label_smoothing": 0.1}),
    ],
)
def test_cli_chooses_the_c_of_softmax_regression_cv(digits_csv, capsys, tmp_path, options, kwargs):
    path, X, y = digits_csv
    model_path = tmp_path / "m.safetensors"
    status, out, err = run_cli(
        capsys, "fit", path, "--target", "digit", "-o", model_path, "--cv", 4, *options, "--json"
    )
    assert status == 0, err
    doc = json.loads(out)["cv"]
    ref = SoftmaxRegressionCV(cv=4, **kwargs).fit(X, y)
    assert doc["C"] == ref.C_
    assert doc["folds"] == 4
    np.testing.assert_allclose(doc["Cs"], ref.Cs_)
    mean, se = mean_and_se(ref)
    np.testing.assert_allclose(doc["mean_scores"], mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(doc["std_errors"], se, rtol=0, atol=1e-9)
    assert doc["best_C"] == ref.Cs_[int(np.argmax(mean))]
    # the saved model is the refit at the chosen C, with the frame's column names
    saved = load_model(model_path)
    assert saved.C == ref.C_
    assert saved.label_smoothing == kwargs.get("label_smoothing", 0.0)
    np.testing.assert_allclose(saved.coef_, ref.coef_, atol=1e-8)
    assert list(saved.feature_names_in_) == list(X.columns)


def test_one_se_rule_by_hand(digits_csv, capsys, tmp_path):
    """--one-se: the smallest C whose mean is within one standard error of the best,
    computed here from the reported mean scores and standard errors."""
    path, _, _ = digits_csv
    argv = ["fit", path, "--target", "digit", "-o", tmp_path / "m.safetensors", "--cv", 5]
    status, out, _ = run_cli(capsys, *argv, "--Cs", "9", "--one-se", "--json")
    assert status == 0
    doc = json.loads(out)["cv"]
    mean, se, Cs = map(np.asarray, (doc["mean_scores"], doc["std_errors"], doc["Cs"]))
    b = int(np.argmax(mean))
    assert doc["C"] == Cs[mean >= mean[b] - se[b]].min()
    assert doc["rule"] == "one standard error"


def test_text_output_and_figures(digits_csv, capsys, tmp_path):
    from matplotlib.image import imread

    path, _, _ = digits_csv
    cv_png, path_svg = tmp_path / "cv.png", tmp_path / "path.svg"
    status, out, err = run_cli(
        capsys, "fit", path, "--target", "digit", "-o", tmp_path / "m.safetensors",
        "--cv", 3, "--Cs", "4", "--cv-plot", cv_png, "--path-plot", path_svg,
    )  # fmt: skip
    assert status == 0, err
    assert "cross-validation: 3 stratified folds, scoring neg_log_loss" in out
    assert "<- chosen" in out and "chosen C = " in out
    assert imread(cv_png).shape[2] in (3, 4)
    assert path_svg.read_text().lstrip().startswith("<?xml")
    status, out, _ = run_cli(
        capsys, "fit", path, "--target", "digit", "-o", tmp_path / "m.safetensors",
        "--cv", 3, "--Cs", "4", "--cv-plot", cv_png, "--json",
    )  # fmt: skip
    assert json.loads(out)["cv"]["plots"] == {"cv": str(cv_png)}


def test_fit_without_cv_is_unchanged(digits_csv, capsys, tmp_path):
    path, X, y = digits_csv
    model_path = tmp_path / "m.safetensors"
    argv = ["fit", path, "--target", "digit", "-o", model_path, "--label-smoothing", "0.2"]
    status, out, _ = run_cli(capsys, *argv, "--json")
    assert status == 0 and "cv" not in json.loads(out)
    ref = SoftmaxRegression(label_smoothing=0.2).fit(X, y)
    np.testing.assert_allclose(load_model(model_path).coef_, ref.coef_, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--Cs", "5"], "--Cs needs --cv"),
        (["--one-se"], "--one-se needs --cv"),
        (["--cv-plot", "x.png"], "--cv-plot needs --cv"),
        (["--cv", "1"], "at least 2 folds"),
        (["--cv", "3", "--C", "2"], "--C and --cv exclude each other"),
        (["--cv", "3", "--Cs", "a,b"], "comma-separated numbers"),
        (["--cv", "3", "--Cs", "0"], "at least 1"),
        (["--cv", "3", "--Cs", "1,-1"], "finite number > 0"),
        (["--cv", "3", "--summary"], "--cv cannot be combined with --summary"),
        (["--cv", "3", "--reference-class", "1"], "--reference-class"),
        (["--cv", "3", "--stream"], "--stream"),
        (["--cv", "3", "--cv-plot", "cv.txt"], "--cv-plot"),
        (["--cv", "3", "--scoring", "nope"], "not a scikit-learn scorer"),
        (["--cv", "500"], "smallest class has only"),
        (["--cv", "3", "--label-smoothing", "1"], "label_smoothing"),
    ],
)
def test_bad_combinations_are_refused(digits_csv, capsys, tmp_path, options, fragment):
    path, _, _ = digits_csv
    model_path = tmp_path / "m.safetensors"
    status, _out, err = run_cli(
        capsys, "fit", path, "--target", "digit", "-o", model_path, *options
    )
    assert status == 1
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0] and fragment in lines[0], err
    assert not model_path.exists()
