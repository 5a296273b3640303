"""`softmax fit --summary` and `softmax info MODEL --summary DATA` against softmax.inference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from softmax import SoftmaxRegression, inference, load_model
from softmax.cli import main

pd = pytest.importorskip("pandas")
sm = pytest.importorskip("statsmodels.api")


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def anes_csv(tmp_path_factory):
    data = sm.datasets.anes96.load_pandas()
    frame = data.exog.assign(PID=data.endog.astype(int))
    path = tmp_path_factory.mktemp("summary") / "anes.csv"
    frame.to_csv(path, index=False)
    return path, data.exog, data.endog.astype(int)


def test_fit_summary_prints_the_table_of_inference(capsys, tmp_path, anes_csv):
    path, X, y = anes_csv
    model = tmp_path / "m.safetensors"
    status, out, _ = run_cli(
        capsys, "fit", path, "--target", "PID", "-o", model, "--C", "inf", "--summary", "--quiet"
    )
    assert status == 0
    clf = load_model(model)
    assert np.isposinf(clf.C)
    expected = inference(clf, X, y)
    expected.dep_name = "PID"
    assert expected.summary() in out
    # statsmodels' MNLogit on the same rows: the table's numbers
    ref = sm.MNLogit(y, sm.add_constant(X, prepend=False)).fit(disp=0)
    np.testing.assert_allclose(expected.bse, np.asarray(ref.bse).T, rtol=1e-6)
    assert "Method:                           MLE" in out and "PID=6" in out


def test_summary_json_and_info(capsys, tmp_path, anes_csv):
    path, X, y = anes_csv
    model = tmp_path / "m.safetensors"
    status, out, _ = run_cli(
        capsys, "fit", path, "--target", "PID", "-o", model, "--C", "inf",
        "--reference-class", "6", "--summary", "--cov-type", "HC0", "--json",
    )  # fmt: skip
    assert status == 0
    doc = json.loads(out)["inference"]
    clf = load_model(model)
    assert clf.reference_class == 6 and not clf.coef_[6].any()
    res = inference(clf, X, y, cov_type="HC0")
    assert doc["reference"] == 6 and doc["cov_type"] == "HC0" and doc["C"] is None
    got = np.array([r["std_err"] for r in doc["coefficients"]]).reshape(res.bse.shape)
    np.testing.assert_allclose(got, res.bse, rtol=1e-12)
    # info MODEL --summary DATA: the same table from the file
    status, out, _ = run_cli(capsys, "info", model, "--summary", path, "--target", "PID")
    assert status == 0 and inference(clf, X, y).summary().splitlines()[-3] in out
    status, out, _ = run_cli(capsys, "info", model, "--summary", path, "--target", "PID", "--json")
    info = json.loads(out)
    assert info["params"]["C"] == "inf" and info["params"]["reference_class"] == 6
    assert info["inference"]["llf"] == pytest.approx(res.llf, rel=1e-12)
    assert info["inference"]["data"] == "anes.csv"


def test_summary_errors_are_one_line(capsys, tmp_path, anes_csv):
    path, X, y = anes_csv
    model = tmp_path / "l1.safetensors"
    SoftmaxRegression(C=1.0, l1_ratio=1.0).fit(X, y).save(model)
    status, _, err = run_cli(capsys, "info", model, "--summary", path, "--target", "PID")
    assert status != 0 and "Traceback" not in err and "L1" in err
    status, _, err = run_cli(capsys, "info", model, "--target", "PID")
    assert status != 0 and "--summary DATA" in err
    status, _, err = run_cli(
        capsys, "fit", path, "--target", "PID", "-o", tmp_path / "x.safetensors",
        "--reference-class", "9",
    )  # fmt: skip
    assert status != 0 and "not one of the classes" in err
