"""The command line, run for real: in process (main + capsys) and as a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.special
from sklearn.datasets import dump_svmlight_file, load_iris

from softmax import SoftmaxRegression, load_model
from softmax.cli import main

pd = pytest.importorskip("pandas")

SPECIES = np.array(["setosa", "versicolor", "virginica"])


def run_cli(capsys, *argv):
    """main(argv) in process; returns (status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_subprocess(*argv, cwd=None, timeout=120):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "softmax", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(status, err):
    assert status != 0
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "error" in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Iris as CSV (train/test), Parquet, NPZ and LIBSVM, and a model fitted by the CLI."""
    folder = tmp_path_factory.mktemp("cli")
    X, y = load_iris(return_X_y=True, as_frame=True)
    frame = X.copy()
    frame["species"] = SPECIES[y]
    order = np.random.default_rng(0).permutation(len(frame))
    train, test = frame.iloc[order[:110]], frame.iloc[order[110:]]
    paths = {
        "train": folder / "train.csv",
        "test": folder / "test.csv",
        "parquet": folder / "test.parquet",
        "npz": folder / "iris.npz",
        "svm": folder / "iris.svm",
        "folder": folder,
    }
    train.to_csv(paths["train"], index=False)
    test.to_csv(paths["test"], index=False)
    test.to_parquet(paths["parquet"], index=False)
    np.savez(paths["npz"], X=X.to_numpy(), y=y.to_numpy())
    dump_svmlight_file(X.to_numpy(), y.to_numpy(), str(paths["svm"]))
    paths["model"] = folder / "model.safetensors"
    status = main(["fit", str(paths["train"]), "--target", "species", "-o", str(paths["model"])])
    assert status == 0
    paths["train_frame"], paths["test_frame"] = train, test
    return paths


# -- apply ---------------------------------------------------------------------------


def test_apply_prints_the_softmax(capsys):
    status, out, _ = run_cli(capsys, "apply", "1 2 3 4 1 2 3")
    assert status == 0
    assert out.strip() == "0.024 0.064 0.175 0.475 0.024 0.064 0.175"


def test_apply_log_temperature_and_json(capsys):
    x = np.array([1.0, -2.0, 0.5])
    status, out, _ = run_cli(capsys, "apply", "1,-2,0.5", "--temperature", "0.5", "--json")
    assert status == 0
    doc = json.loads(out)
    np.testing.assert_allclose(doc["output"], scipy.special.softmax(x / 0.5), rtol=1e-14)
    status, out, _ = run_cli(capsys, "apply", "1", "-2", "0.5", "--log", "--digits", "6")
    expected = scipy.special.log_softmax(x)
    assert out.split() == [f"{v:.6f}" for v in expected]


@pytest.mark.parametrize(
    "argv", [["apply", "1 two 3"], ["apply", "1 2", "--temperature", "-1"], ["apply", ","]]
)
def test_apply_bad_input(capsys, argv):
    status, _, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err)


# -- fit / evaluate / predict / info / export on files --------------------------------


def test_fit_model_equals_library_fit(files):
    model = load_model(files["model"])
    train = files["train_frame"]
    reference = SoftmaxRegression().fit(train.drop(columns="species"), train["species"])
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-6, atol=1e-8)
    assert list(model.feature_names_in_) == list(train.columns[:-1])
    assert model.classes_.tolist() == SPECIES.tolist()


def test_fit_json_summary(files, capsys, tmp_path):
    out_model = tmp_path / "m.safetensors"
    status, out, _ = run_cli(
        capsys,
        "fit",
        files["train"],
        "--target",
        "species",
        "-o",
        out_model,
        "--C",
        "0.5",
        "--json",
    )
    assert status == 0
    doc = json.loads(out)
    assert doc["n_samples"] == 110 and doc["n_features"] == 4 and doc["converged"] is True
    assert doc["classes"] == SPECIES.tolist()
    assert 0.9 < doc["train_accuracy"] <= 1.0
    assert load_model(out_model).C == 0.5


def test_evaluate_report_matches_sklearn(files, capsys, tmp_path):
    from sklearn.metrics import accuracy_score, log_loss

    test = files["test_frame"]
    model = load_model(files["model"])
    X_test = test.drop(columns="species")
    proba = model.predict_proba(X_test)
    status, out, _ = run_cli(
        capsys, "evaluate", files["model"], files["test"], "--target", "species", "--json"
    )
    assert status == 0
    doc = json.loads(out)
    assert doc["accuracy"] == pytest.approx(accuracy_score(test["species"], model.predict(X_test)))
    assert doc["log_loss"] == pytest.approx(log_loss(test["species"], proba, labels=SPECIES))
    assert np.sum(doc["confusion_matrix"]) == len(test)
    # The text report carries the same numbers.
    status, out, _ = run_cli(
        capsys, "evaluate", files["model"], files["test"], "--target", "species"
    )
    assert status == 0
    assert f"accuracy  {doc['accuracy']:.4f}" in out and "ECE" in out and "virginica" in out


def test_evaluate_parquet_and_plots(files, capsys, tmp_path):
    from matplotlib.image import imread

    plots = tmp_path / "plots"
    status, out, _ = run_cli(
        capsys,
        "evaluate",
        files["model"],
        files["parquet"],
        "--target",
        "species",
        "--plots",
        plots,
        "--json",
    )
    assert status == 0
    doc = json.loads(out)
    assert sorted(os.path.basename(f) for f in doc["figures"]) == [
        "confusion_matrix.png",
        "reliability.png",
    ]
    for name in doc["figures"]:
        image = imread(name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200


def test_predict_csv_proba_and_stdout(files, capsys, tmp_path):
    model = load_model(files["model"])
    X_test = files["test_frame"].drop(columns="species")
    out_csv = tmp_path / "pred.csv"
    status, out, _ = run_cli(
        capsys, "predict", files["model"], files["test"], "-o", out_csv, "--proba"
    )
    assert status == 0 and "wrote 40 predictions" in out
    written = pd.read_csv(out_csv)
    assert written["prediction"].tolist() == model.predict(X_test).tolist()
    np.testing.assert_allclose(
        written[[f"proba_{c}" for c in SPECIES]].to_numpy(),
        model.predict_proba(X_test),
        rtol=1e-12,
    )
    # Without -o: CSV on stdout.
    status, out, _ = run_cli(capsys, "predict", files["model"], files["test"])
    lines = out.strip().splitlines()
    assert lines[0] == "prediction" and lines[1:] == model.predict(X_test).tolist()


def test_predict_parquet_output_and_json(files, capsys, tmp_path):
    out_pq = tmp_path / "pred.parquet"
    status, out, _ = run_cli(
        capsys, "predict", files["model"], files["test"], "-o", out_pq, "--json"
    )
    assert status == 0
    doc = json.loads(out)
    assert doc["n_samples"] == 40 and sum(doc["counts"].values()) == 40
    assert pd.read_parquet(out_pq).shape == (40, 1)


def test_npz_libsvm_and_builtin_data(capsys, files, tmp_path):
    X, y = load_iris(return_X_y=True)
    for data in (files["npz"], files["svm"], "iris"):
        model_path = tmp_path / "m.safetensors"
        status, out, err = run_cli(capsys, "fit", data, "-o", model_path, "--json")
        assert status == 0, err
        assert json.loads(out)["n_samples"] == 150
        status, out, err = run_cli(capsys, "evaluate", model_path, data, "--json")
        assert status == 0, err
        reference = SoftmaxRegression().fit(X, y)
        assert json.loads(out)["accuracy"] == pytest.approx(reference.score(X, y), abs=0.01)


def test_info_and_export(files, capsys, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    status, out, _ = run_cli(capsys, "info", files["model"], "--json")
    assert status == 0
    doc = json.loads(out)
    assert doc["classes"]["values"] == SPECIES.tolist() and doc["n_features_in"] == 4
    status, out, _ = run_cli(capsys, "info", files["model"])
    assert "setosa, versicolor, virginica" in out and "petal width (cm)" in out

    onnx_path = tmp_path / "m.onnx"
    status, out, _ = run_cli(capsys, "export", files["model"], "-o", onnx_path, "--json")
    assert status == 0 and json.loads(out)["opset"] == 17
    model = load_model(files["model"])
    X = files["test_frame"].drop(columns="species")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    _, proba, _ = session.run(None, {"X": X.to_numpy()})
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-6, rtol=0)


def test_fit_stream_matches_in_memory(files, capsys, tmp_path):
    model_path = tmp_path / "s.safetensors"
    status, out, err = run_cli(
        capsys,
        "fit",
        files["train"],
        "--target",
        "species",
        "-o",
        model_path,
        "--stream",
        "--block-rows",
        "32",
        "--json",
    )
    assert status == 0, err
    assert json.loads(out)["streamed"] is True
    streamed, in_memory = load_model(model_path), load_model(files["model"])
    np.testing.assert_allclose(streamed.coef_, in_memory.coef_, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_file_over_the_memory_budget_is_streamed_and_says_so(files, capsys, tmp_path, json_flag):
    """Over --memory-budget: a streamed fit, one line saying so, the same report."""
    from sklearn.metrics import accuracy_score

    model_path = tmp_path / "b.safetensors"
    argv = ["fit", files["train"], "--target", "species", "-o", model_path, "--block-rows", "32"]
    status, out, err = run_cli(capsys, *argv, "--memory-budget", "0.001", *json_flag)
    assert status == 0, err
    notes = [line for line in err.splitlines() if "--memory-budget" in line]
    assert len(notes) == 1 and "streaming" in notes[0] and "train.csv" in notes[0]
    streamed, in_memory = load_model(model_path), load_model(files["model"])
    assert streamed.objective_ == pytest.approx(in_memory.objective_, rel=1e-6)
    np.testing.assert_allclose(streamed.coef_, in_memory.coef_, rtol=1e-4, atol=1e-5)
    # the report keeps the rows and the training accuracy, computed here by scikit-learn
    train = files["train_frame"]
    expected = accuracy_score(train["species"], in_memory.predict(train.drop(columns="species")))
    if json_flag:
        doc = json.loads(out)
        assert doc["streamed"] is True and doc["n_samples"] == len(train)
        assert doc["train_accuracy"] == pytest.approx(expected, abs=1e-12)
    else:
        assert f"{len(train)} rows" in out
        assert f"training accuracy {expected:.4f}" in out
    # under the budget: read into memory, nothing said
    status, out, err = run_cli(capsys, *argv, "--memory-budget", "1", "--json")
    assert status == 0 and json.loads(out)["streamed"] is False and "--memory-budget" not in err


def test_unstreamable_file_over_the_memory_budget_is_refused(files, capsys, tmp_path):
    status, _, err = run_cli(
        capsys, "fit", files["svm"], "-o", tmp_path / "m.safetensors", "--memory-budget", "0.001"
    )
    line = assert_one_line_error(status, err)
    assert "--memory-budget" in line and "CSV, Parquet and NPZ" in line
    assert not (tmp_path / "m.safetensors").exists()


# -- bad input: one line on stderr, non-zero status, no traceback --------------------


def _bad_cases(files, tmp_path):
    wrong_features = tmp_path / "wrong.csv"
    files["test_frame"].drop(columns="petal width (cm)").to_csv(wrong_features, index=False)
    text_feature = tmp_path / "text.csv"
    frame = files["test_frame"].copy()
    frame["sepal length (cm)"] = frame["sepal length (cm)"].astype(object)
    frame.iloc[3, 0] = "five"
    frame.to_csv(text_feature, index=False)
    narrow = tmp_path / "narrow.npz"
    np.savez(narrow, X=np.zeros((5, 3)), y=np.arange(5))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    odd = tmp_path / "data.xyz"
    odd.write_text("1,2\n")
    header_only = tmp_path / "header.csv"
    files["test_frame"].iloc[:0].to_csv(header_only, index=False)
    m_out = tmp_path / "m.safetensors"
    model, test = files["model"], files["test"]
    return {
        "missing-file": (
            ["fit", tmp_path / "nope.csv", "--target", "y", "-o", m_out],
            "no such file",
        ),
        "unknown-dataset": (["fit", "cifar", "-o", m_out], "cifar"),
        "unknown-column": (["fit", test, "--target", "kind", "-o", m_out], "kind"),
        "no-target": (["fit", test, "-o", m_out], "--target"),
        "non-numeric": (
            ["fit", text_feature, "--target", "species", "-o", m_out],
            "not numeric",
        ),
        "header-only": (["fit", header_only, "--target", "species", "-o", m_out], "no rows"),
        "model-as-csv": (
            ["fit", test, "--target", "species", "-o", tmp_path / "z.csv"],
            ".safetensors",
        ),
        "onnx-suffix": (["export", model, "-o", tmp_path / "m.txt"], ".onnx"),
        "info-directory": (["info", tmp_path], "is a directory"),
        "evaluate-directory": (
            ["evaluate", tmp_path, test, "--target", "species"],
            "is a directory",
        ),
        "data-directory": (["fit", tmp_path, "-o", m_out], "is a directory"),
        "other-features-csv": (
            ["evaluate", model, wrong_features, "--target", "species"],
            "other features",
        ),
        "other-features-npz": (["predict", model, narrow], "other features"),
        "missing-model": (["info", tmp_path / "none.safetensors"], "no such"),
        "corrupt-model": (["evaluate", corrupt, test, "--target", "species"], "cannot load"),
        "corrupt-model-info": (["info", corrupt], "cannot read"),
        "unknown-format": (["fit", odd, "-o", m_out], "--format"),
        "output-folder-missing": (
            ["fit", test, "--target", "species", "-o", tmp_path / "no" / "m.safetensors"],
            "does not exist",
        ),
        "predict-bad-suffix": (["predict", model, test, "-o", tmp_path / "p.txt"], ".csv"),
        "demo-sizes": (["demo", "--train-size", "9999", "--out", tmp_path / "d"], "at most"),
    }


def test_bad_input_in_process(files, capsys, tmp_path):
    for name, (argv, fragment) in _bad_cases(files, tmp_path).items():
        status, _out, err = run_cli(capsys, *argv)
        line = assert_one_line_error(status, err)
        assert fragment in line, (name, line)
        assert status == 1, name
    # No model written by a failed fit, and none under a name that says otherwise.
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "z.csv").exists()


def test_bad_input_with_json_prints_an_error_document(files, capsys, tmp_path):
    """With --json a failed command prints exactly one JSON document on stdout too."""
    for name, (argv, fragment) in _bad_cases(files, tmp_path).items():
        status, out, err = run_cli(capsys, *argv, "--json")
        line = assert_one_line_error(status, err)
        doc = json.loads(out)
        assert doc == {
            "error": line.split(": error: ", 1)[1],
            "command": argv[0],
            "exit_status": status,
        }, name
        assert fragment in doc["error"] and status == 1, name


def test_usage_errors_with_json_print_an_error_document(capsys):
    status, out, err = run_cli(capsys, "fit", "--json")
    assert status == 2 and "required" in err
    assert json.loads(out) == {
        "error": "the following arguments are required: DATA, -o/--output",
        "command": "fit",
        "exit_status": 2,
    }
    status, out, _ = run_cli(capsys, "fti", "iris", "--json")
    doc = json.loads(out)
    assert status == 2 and doc["command"] == "fti" and "did you mean 'fit'" in doc["error"]
    # Without --json stdout stays empty.
    status, out, _ = run_cli(capsys, "fit")
    assert status == 2 and out == ""


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [("fti", "fit"), ("evalute", "evaluate"), ("predcit", "predict"), ("bandits", "bandit")],
)
def test_mistyped_command_gets_a_suggestion(capsys, typed, suggestion):
    status, _, err = run_cli(capsys, typed)
    assert status == 2
    assert f"unknown command {typed!r}; did you mean {suggestion!r}?" in err
    status, _, err = run_cli(capsys, "zzzzzz")
    assert status == 2 and "did you mean" not in err and "commands: fit, evaluate" in err


def test_usage_errors_exit_2(capsys):
    assert main(["fit"]) == 2
    assert main(["no-such-command"]) == 2
    assert main([]) == 2
    capsys.readouterr()


def test_bad_input_subprocess(files, tmp_path):
    cases = _bad_cases(files, tmp_path)
    for name in ("unknown-column", "other-features-csv", "corrupt-model", "non-numeric"):
        argv, fragment = cases[name]
        proc = run_subprocess(*argv)
        line = assert_one_line_error(proc.returncode, proc.stderr)
        assert fragment in line, (name, line)


# -- subprocess: entry point, fast --help, demo --------------------------------------


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from softmax.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('numpy', 'sklearn', 'scipy', 'matplotlib', 'pandas') "
        "if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


COMMANDS = ("fit", "evaluate", "predict", "info", "export", "demo", "apply", "bandit")


def test_help_and_version_subprocess():
    proc = run_subprocess("--help")
    assert proc.returncode == 0
    for command in COMMANDS:
        assert command in proc.stdout
    proc = run_subprocess("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("softmax ")


def test_apply_subprocess():
    proc = run_subprocess("apply", "1 2 3 4 1 2 3")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "0.024 0.064 0.175 0.475 0.024 0.064 0.175"


@pytest.mark.slow
def test_demo_subprocess_writes_report_model_and_images(tmp_path):
    from matplotlib.image import imread

    out = tmp_path / "demo"
    proc = run_subprocess(
        "demo",
        "--train-size",
        "1000",
        "--test-size",
        "500",
        "--out",
        out,
        "--json",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["n_train"] == 1000 and doc["n_test"] == 500 and doc["n_samples"] == 500
    # Softmax regression on 1,000 real digits reaches well over 80% on held-out ones.
    assert doc["accuracy"] > 0.8
    assert len(doc["per_class"]) == 10 and 0 <= doc["ece"] < 0.2
    names = sorted(os.path.basename(f) for f in doc["figures"])
    assert names == ["class_weights.png", "confusion_matrix.png", "reliability.png"]
    for name in doc["figures"]:
        with open(name, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        image = imread(name)
        assert image.shape[0] > 300 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # not a blank canvas
    model = load_model(doc["model"])
    assert model.coef_.shape == (10, 784)


def test_demo_in_process_text(capsys, tmp_path):
    status, out, err = run_cli(
        capsys,
        "demo",
        "--train-size",
        "300",
        "--test-size",
        "200",
        "--out",
        tmp_path,
        "--no-plots",
        "--max-iter",
        "50",
    )
    assert status == 0, err
    assert "accuracy" in out and "confusion matrix" in out
    assert (tmp_path / "model.safetensors").exists()
    assert not (tmp_path / "class_weights.png").exists()


def test_every_command_is_registered_with_json(capsys):
    """The command table, the modules and the shared --json agree."""
    from softmax.cli import build_parser

    assert build_parser().commands == COMMANDS
    for command in COMMANDS:
        status, out, _ = run_cli(capsys, command, "--help")
        assert status == 0
        assert f"usage: softmax {command}" in out and "--json" in out


def test_bandit_command_is_registered(capsys):
    with pytest.raises(SystemExit) as exc:
        from softmax.cli import build_parser

        build_parser().parse_args(["bandit", "--help"])
    assert exc.value.code == 0
    assert "bandit" in capsys.readouterr().out


class _Terminal:
    """A stderr that says it is a terminal (tqdm draws only there) and keeps the text."""

    def __init__(self):
        import io

        self.buffer = io.StringIO()

    def isatty(self):
        return True

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass

    def getvalue(self):
        return self.buffer.getvalue()


def test_progress_bar_shows_objective_and_gap_on_a_terminal(monkeypatch):
    from softmax.cli._common import FitProgress

    pytest.importorskip("tqdm")
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    X, y = load_iris(return_X_y=True)
    with FitProgress(1000, tol=1e-8) as progress:
        clf = SoftmaxRegression(solver="lbfgs", tol=1e-8).fit(X, y, callback=progress)
        assert progress._bar.total is None  # no total: no ETA from max_iter
    assert progress.iterations == clf.n_iter_ > 1
    assert "fitting" in screen.getvalue()
    # The objective it last saw is the fitted model's, which scikit-learn's
    # lbfgs (same penalty: C * sum of losses + |W|^2 / 2) reaches too.
    from sklearn.linear_model import LogisticRegression

    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y)
    logp = sk.predict_log_proba(X)[np.arange(len(y)), y]
    sk_objective = -logp.sum() + 0.5 * np.sum(sk.coef_**2)
    assert progress.last_objective == pytest.approx(sk_objective, rel=1e-6)
    # the gap it shows is the solver's estimate at the iterate the last step
    # left from: within a few steps of tol (the fit then stopped below it)
    assert clf.converged_ and 0 <= progress.last_gap < 1e-6


def test_fit_command_progress_has_no_total_and_shows_the_gap(files, monkeypatch, tmp_path):
    """The bar of `softmax fit` on a terminal: iterations and gap to tol, never an ETA."""
    pytest.importorskip("tqdm")
    from softmax.cli._common import FitProgress

    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setattr(FitProgress, "refresh_seconds", 0.0)  # draw every iteration
    model_path = tmp_path / "p.safetensors"
    argv = ["fit", files["train"], "--target", "species", "-o", model_path]
    assert main([str(a) for a in [*argv, "--solver", "lbfgs", "--tol", "1e-9"]]) == 0
    text = screen.getvalue()
    assert "fitting (max_iter 1000)" in text and "(tol 1e-09)" in text
    gaps = [float(g) for g in re.findall(r"gap=([0-9.e+-]+)", text)]
    assert gaps and gaps[-1] < 1e-6 < gaps[0]
    # tqdm draws "n/total" and "elapsed<remaining" only when it has a total
    assert "/1000" not in text and not re.search(r"\d\d:\d\d<", text)
    n_iter = load_model(model_path).n_iter_
    assert f"{n_iter}it" in text


def test_large_csv_shows_a_bar_of_bytes_while_it_loads(files, monkeypatch, tmp_path):
    """Loading: a bar whose total is the file's size (reached), reading the same rows."""
    import softmax._persist
    import softmax.backends.stream
    import softmax.cli._common as common
    import softmax.streaming

    pytest.importorskip("tqdm")
    bars, real = [], softmax._persist.progress_bar

    def recorded(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        return bars[-1]

    for module in (softmax._persist, softmax.streaming, softmax.backends.stream):
        monkeypatch.setattr(module, "progress_bar", recorded)
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setattr(common, "LOAD_PROGRESS_BYTES", 0)  # iris is "large" here
    model_path = tmp_path / "l.safetensors"
    argv = ["fit", files["train"], "--target", "species", "-o", model_path]
    assert main([str(a) for a in argv]) == 0
    size = os.path.getsize(files["train"])
    [bar] = bars
    assert bar.total == size and bar.n == size and bar.unit == "B"
    assert f"reading train.csv:   0%|          | 0.00/{size / 1024:.2f}k" in screen.getvalue()
    # the rows read through the bar are the rows pandas reads on its own
    np.testing.assert_array_equal(load_model(model_path).coef_, load_model(files["model"]).coef_)
    # a streamed fit shows the rows of each pass, the first counting them
    bars.clear()
    assert main([str(a) for a in [*argv, "--stream", "--block-rows", "40"]]) == 0
    n = len(files["train_frame"])
    first, *passes = bars
    assert first.desc == "first pass" and first.total is None and first.n == n
    assert passes and all(p.total == p.n == n and p.unit == "rows" for p in passes)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_progress_callback_gets_no_gap_from_sgd():
    from softmax.cli._common import FitProgress

    X, y = load_iris(return_X_y=True)
    seen = []

    def callback(iteration, objective, gap):
        seen.append(gap)

    SoftmaxRegression(solver="sgd", max_iter=3, random_state=0).fit(X / 8, y, callback=callback)
    assert seen == [None, None, None]
    with FitProgress(10, tol=1e-4, enabled=False) as progress:
        progress(1, 2.0)
    assert progress.postfix() == "objective=2"
    progress(2, 1.5, gap=3e-3)
    assert progress.postfix() == "objective=1.5, gap=3.0e-03 (tol 1e-04)"
    progress(3, 1.4, gap=float("inf"))  # no estimate yet
    assert progress.postfix() == "objective=1.4, gap=? (tol 1e-04)"


def test_no_progress_bar_when_not_a_terminal(capsys):
    from softmax.cli._common import FitProgress

    with FitProgress(10) as progress:
        progress(1, 2.0)
    assert capsys.readouterr().err == ""


# -- help, install hints, built-in data ------------------------------------------------


def test_help_names_no_file_an_installed_package_lacks():
    """The help of every command points to `--help`, never to docs/ files or URLs."""
    for argv in (["--help"], *([c, "--help"] for c in COMMANDS)):
        proc = run_subprocess(*argv)
        assert proc.returncode == 0, proc.stderr
        assert "docs/" not in proc.stdout and ".md" not in proc.stdout, argv
    assert "softmax COMMAND --help" in run_subprocess("--help").stdout


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Pretend matplotlib is not installed (as find_spec reports it)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name.split(".")[0] == "matplotlib" else real(name, *a, **k),
    )


def _hint_is_a_quoted_requirement(line, package):
    from packaging.requirements import Requirement

    hint = re.search(r'pip install "([^"]+)"', line)
    assert hint, line
    requirement = Requirement(hint[1])
    assert requirement.name == package and not requirement.extras, line
    return requirement


def test_missing_matplotlib_messages(files, capsys, tmp_path, no_matplotlib):
    # evaluate --plots: fails before any work, with a hint that installs matplotlib.
    status, _, err = run_cli(
        capsys,
        "evaluate",
        files["model"],
        files["test"],
        "--target",
        "species",
        "--plots",
        tmp_path / "p",
    )
    line = assert_one_line_error(status, err)
    assert "--plots needs matplotlib" in line
    _hint_is_a_quoted_requirement(line, "matplotlib")
    assert not (tmp_path / "p").exists()
    # demo: names its own way out (--no-plots), not an option it does not have.
    status, _, err = run_cli(capsys, "demo", "--out", tmp_path / "d")
    line = assert_one_line_error(status, err)
    assert "--no-plots" in line and "--plots " not in line
    _hint_is_a_quoted_requirement(line, "matplotlib")
    # bandit --plot: the same kind of message as the others, no exception class name.
    status, _, err = run_cli(capsys, "bandit", "--n-runs", "5", "--plot", tmp_path / "c.png")
    line = assert_one_line_error(status, err)
    assert line.startswith("softmax bandit: error: --plot needs matplotlib: pip install")
    assert "Error:" not in line
    _hint_is_a_quoted_requirement(line, "matplotlib")


def test_install_hints_carry_the_declared_version_bounds():
    from importlib import metadata

    from packaging.requirements import Requirement

    from softmax._optional import install_hint

    declared = {}
    for line in metadata.requires("softmax"):
        requirement = Requirement(line)
        declared.setdefault(requirement.name, str(requirement.specifier))
    for package in ("matplotlib", "pyarrow", "pandas", "onnx"):
        requirement = _hint_is_a_quoted_requirement(install_hint(package), package)
        assert str(requirement.specifier) == declared[package]
    assert install_hint("not-a-dependency") == 'pip install "not-a-dependency"'


def _declared_extras():
    """pyproject.toml's extras: name -> requirement strings."""
    import tomllib

    root = os.path.join(os.path.dirname(__file__), "..")
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def test_every_install_hint_in_the_code_is_a_quoted_declared_requirement():
    """Hints name packages softmax declares, quoted: they work for a clone too.

    ``pip install "softmax[plot]"`` would fetch whatever the index calls
    softmax for a package installed from a clone, so every hint in the code
    goes through ``install_hint`` (quoted packages with their bounds).
    """
    import shlex

    from packaging.requirements import Requirement

    from softmax._optional import install_hint

    declared = {}
    for requirements in _declared_extras().values():
        for line in requirements:
            requirement = Requirement(line)
            if requirement.name != "softmax":
                declared[requirement.name] = requirement
    src = os.path.join(os.path.dirname(__file__), "..", "src", "softmax")
    packages = set()
    for folder, _, names in os.walk(src):
        for name in names:
            if not name.endswith(".py"):
                continue
            text = Path(folder, name).read_text(encoding="utf-8")
            if name != "_optional.py":  # the one place that writes the command
                assert "pip install" not in text, os.path.join(folder, name)
            # calls with literal package names (the others: _BACKEND_PACKAGES, below)
            for call in re.findall(r"install_hint\(((?:\s*[\"'][^\"']+[\"'],?)+)\s*\)", text):
                packages.update(re.findall(r"[\"']([A-Za-z0-9_.-]+)[\"']", call))
    from softmax.regression import _BACKEND_PACKAGES

    packages.update(p for group in _BACKEND_PACKAGES.values() for p in group)
    assert {"matplotlib", "pandas", "pyarrow", "tqdm", "dask", "onnx"} <= packages
    for package in sorted(packages):
        assert package in declared, f"install_hint({package!r}) names an undeclared package"
        words = shlex.split(install_hint(package))  # quoted: the shell keeps it whole
        assert words[:2] == ["pip", "install"] and len(words) == 3, words
        requirement = Requirement(words[2])
        assert requirement.name == package
        assert requirement.extras == declared[package].extras
        assert requirement.specifier == declared[package].specifier


def test_install_commands_in_the_docs_are_quoted_and_name_real_extras():
    extras = set(_declared_extras())
    root = os.path.join(os.path.dirname(__file__), "..")
    pages = ["README.md"] + [
        os.path.join("docs", n) for n in os.listdir(os.path.join(root, "docs"))
    ]
    seen = 0
    for page in pages:
        if not page.endswith(".md"):
            continue
        text = Path(root, page).read_text(encoding="utf-8")
        for match in re.finditer(r"(\S?)(softmax|\.)\[([a-z0-9,-]+)\]", text):
            if match[2] == "softmax" and match[1] and match[1] in "`(":
                continue  # the package name in prose (softmax[0]), not a command
            seen += 1
            # quoted, so that zsh does not glob the brackets
            assert match[1] and match[1] in "\"'", f"{page}: unquoted {match[0]!r}"
            assert set(match[3].split(",")) <= extras, f"{page}: {match[0]!r}"
    assert seen >= 5


def test_builtin_digits_are_scaled_and_elastic_net_converges(capsys, tmp_path):
    from sklearn.datasets import load_digits

    from softmax.datasets import load_builtin

    digits = load_builtin("digits")
    np.testing.assert_array_equal(digits.data, load_digits().data / 16)
    assert digits.data.min() == 0.0 and digits.data.max() == 1.0
    np.testing.assert_array_equal(digits.images.reshape(len(digits.data), -1), digits.data)
    status, out, err = run_cli(
        capsys, "fit", "digits", "--l1-ratio", "0.5", "-o", tmp_path / "d.safetensors", "--json"
    )
    assert status == 0, err
    doc = json.loads(out)
    assert doc["converged"] is True and doc["warnings"] == [] and doc["solver"] == "proximal"
    assert doc["n_iter"] < 1000
    # At the optimum: scikit-learn's saga elastic net on the same [0, 1] pixels
    # gives an objective within 1e-6 (relative; measured 1.9e-7 above saga's
    # at the default tol=1e-7), computed from its definition with SciPy.
    from scipy.special import log_softmax
    from sklearn.linear_model import LogisticRegression

    X, y = digits.data, digits.target

    def objective(W, b):
        ce = -log_softmax(X @ W.T + b, axis=1)[np.arange(len(y)), y].sum()
        return ce + 0.25 * np.sum(W**2) + 0.5 * np.abs(W).sum()

    model = load_model(tmp_path / "d.safetensors")
    sk = LogisticRegression(l1_ratio=0.5, solver="saga", C=1.0, tol=1e-6, max_iter=20_000)
    sk.fit(X, y)
    ours, theirs = objective(model.coef_, model.intercept_), objective(sk.coef_, sk.intercept_)
    assert doc["objective"] == pytest.approx(ours, rel=1e-9)
    assert (ours - theirs) / theirs < 1e-6, (ours, theirs)


def test_fit_with_the_group_lasso(capsys, tmp_path):
    from sklearn.datasets import load_digits

    from softmax import SoftmaxRegression, load_model

    path = tmp_path / "g.safetensors"
    args = ["--C", "0.02", "--l1-ratio", "1", "--l1-type", "grouped"]
    status, out, err = run_cli(capsys, "fit", "digits", *args, "-o", path, "--json")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["converged"] is True and doc["solver"] == "proximal-newton"
    model = load_model(path)
    assert model.l1_type == "grouped"
    X, y = load_digits(return_X_y=True)
    same = SoftmaxRegression(C=0.02, l1_ratio=1.0, l1_type="grouped").fit(X / 16, y)
    assert model.n_features_selected_ == same.n_features_selected_ < 64
    status, _, err = run_cli(capsys, "fit", "digits", "--l1-type", "rows", "-o", path)
    assert status != 0 and "--l1-type" in err


# -- files follow the umask --------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_every_written_file_follows_the_umask(files, capsys, tmp_path, umask):
    out = tmp_path / "out"
    out.mkdir()
    commands = [
        ["fit", files["train"], "--target", "species", "-o", out / "m.safetensors"],
        ["export", out / "m.safetensors", "-o", out / "m.onnx"],
        # a checkpoint folder and its records
        [
            "fit",
            files["train"],
            "--target",
            "species",
            "--checkpoint",
            out / "ck",
            "-o",
            out / "streamed.safetensors",
        ],
        ["predict", out / "m.safetensors", files["test"], "-o", out / "p.csv", "--proba"],
        ["predict", out / "m.safetensors", files["test"], "-o", out / "p.parquet"],
        [
            "evaluate",
            out / "m.safetensors",
            files["test"],
            "--target",
            "species",
            "--plots",
            out / "figures",
        ],
        [
            "demo",
            "--train-size",
            "200",
            "--test-size",
            "50",
            "--max-iter",
            "20",
            "--out",
            out / "demo",
        ],
        [
            "bandit",
            "--n-runs",
            "5",
            "--n-steps",
            "20",
            "--last",
            "10",
            "--plot",
            out / "curves.png",
        ],
    ]
    previous = os.umask(umask)
    try:
        for argv in commands:
            status, _, err = run_cli(capsys, *argv)
            assert status == 0, (argv, err)
    finally:
        os.umask(previous)
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in written} >= {
        "m.safetensors",
        "m.onnx",
        "p.csv",
        "p.parquet",
        "confusion_matrix.png",
        "reliability.png",
        "model.safetensors",
        "class_weights.png",
        "curves.png",
    }
    assert any(p.parent.name == "evals" and p.suffix == ".npz" for p in written)
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    folders = [p for p in out.rglob("*") if p.is_dir()]
    assert {p.name for p in folders} >= {"figures", "demo", "ck", "evals"}
    for path in folders:
        assert path.stat().st_mode & 0o777 == 0o777 & ~umask, path


# -- signals and pipes, sent for real ---------------------------------------------------


def test_broken_pipe_exits_quietly(files, tmp_path):
    """`softmax predict ... | head -1`: the reader leaves early; no error, no traceback."""
    big = tmp_path / "big.npz"
    rng = np.random.default_rng(0)
    np.savez(big, X=rng.normal(5.0, 1.0, size=(100_000, 4)), y=np.zeros(100_000))
    script = (
        f'"{sys.executable}" -m softmax predict "{files["model"]}" "{big}" --proba | head -1; '
        'echo "status=${PIPESTATUS[0]}" >&2'
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert proc.stdout.startswith("prediction,proba_setosa,") and proc.stdout.count("\n") == 1
    assert proc.stderr.strip() == "status=0", proc.stderr


def _wait_until(ready, proc, what, timeout=120.0):
    """Poll ``ready()`` until it holds; fail if ``proc`` ends first or time runs out.

    The readiness signals are things the command does (a file it writes), so
    the tests never guess how long imports and loading take.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the command ended (status {proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.005)


# Runs the command line as `python -m softmax` does, after making the first
# callback of a fit (the solver has started) touch the file named by
# SOFTMAX_TEST_READY: a readiness signal for a fit that writes no files.
_READY_WRAPPER = """
import os, pathlib, sys
from softmax.cli import main
from softmax.regression import SoftmaxRegression

_fit = SoftmaxRegression.fit

def fit(self, *args, callback=None, **kwargs):
    def ready(*info):
        pathlib.Path(os.environ["SOFTMAX_TEST_READY"]).touch()
        if callback is not None:
            return callback(*info)
    return _fit(self, *args, callback=ready, **kwargs)

SoftmaxRegression.fit = fit
sys.exit(main())
"""


@pytest.mark.parametrize("json_flag", [False, True], ids=["text", "json"])
def test_sigint_stops_a_fit_with_exit_130_and_one_line(tmp_path, json_flag):
    """Ctrl-C during a long fit: exit status 130, one line on stderr, no model file."""
    model = tmp_path / "m.safetensors"
    ready = tmp_path / "solver-started"
    argv = [
        sys.executable,
        "-c",
        _READY_WRAPPER,
        "fit",
        "mnist-sample",
        "--solver",
        "sgd",
        "--tol",
        "0",
        "--max-iter",
        "100000",
        "-o",
        str(model),
    ]
    proc = subprocess.Popen(
        argv + (["--json"] if json_flag else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore", SOFTMAX_TEST_READY=str(ready)),
    )
    try:
        _wait_until(ready.exists, proc, "the solver's first callback")
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        latency = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert latency < 1.0, f"exit {latency:.2f} s after SIGINT"
    assert err.strip().splitlines() == ["softmax fit: interrupted"], err
    assert not model.exists()
    if json_flag:
        assert json.loads(out) == {"error": "interrupted", "command": "fit", "exit_status": 130}
    else:
        assert out == ""


@pytest.fixture(scope="module")
def slow_csv(tmp_path_factory):
    """A CSV whose checkpointed fit takes about 80 passes (features on scales 1e-2..1e2).

    Each pass reads 200 blocks, so one takes longer than a signal takes to
    arrive: a run interrupted at its first new record leaves few records
    behind, and 20 runs cannot finish the fit (with 1,000 rows they could).
    """
    rng = np.random.default_rng(0)
    n, p, k = 5000, 16, 3
    scales = np.geomspace(0.01, 100.0, p)
    X = rng.normal(size=(n, p)) * scales
    W = rng.normal(size=(k, p)) / scales
    y = np.argmax(2.0 * X @ W.T + rng.gumbel(size=(n, k)), axis=1)
    path = tmp_path_factory.mktemp("slow") / "train.csv"
    pd.DataFrame(X, columns=[f"f{j}" for j in range(p)]).assign(label=y).to_csv(path, index=False)
    return path


_SLOW_FIT = {"solver": "newton-cg", "C": 1e4, "tol": 1e-12, "max_iter": 1000}


def _records(ck):
    """The names of the evaluation records a checkpoint holds (not temporaries)."""
    folder = ck / "evals"
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.suffix == ".npz" and not p.name.startswith(".")}


def test_sigint_stops_a_checkpointed_fit_20_of_20_and_it_resumes(slow_csv, tmp_path):
    """The issue's criterion, with the signal sent for real: 20 times in a row a
    checkpointed streaming fit gets SIGINT while it reads the file; each time it
    ends within a second with status 130, the next run resumes where it stopped,
    and the last (left alone) writes the model an uninterrupted fit gives."""
    from sklearn.linear_model import LogisticRegression

    from softmax.streaming import FileSource

    ck, model = tmp_path / "ck", tmp_path / "m.safetensors"
    argv = [
        sys.executable,
        "-m",
        "softmax",
        "fit",
        str(slow_csv),
        "--target",
        "label",
        "--solver",
        _SLOW_FIT["solver"],
        "--C",
        str(_SLOW_FIT["C"]),
        "--tol",
        str(_SLOW_FIT["tol"]),
        "--max-iter",
        str(_SLOW_FIT["max_iter"]),
        "--block-rows",
        "25",
        "--quiet",
        "--checkpoint",
        str(ck),
        "-o",
        str(model),
    ]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    latencies = []
    for run in range(20):
        before = _records(ck)
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            # ready: past the records it replays, the fit reads the file again
            n_before = len(before)
            _wait_until(lambda n=n_before: len(_records(ck)) > n, proc, "a new checkpoint record")
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            latencies.append(time.monotonic() - sent)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, f"run {run}: status {proc.returncode}, stderr {err!r}"
        assert err.strip().splitlines() == ["softmax fit: interrupted"], err
        assert not model.exists()
        assert not list(ck.rglob("*.tmp"))
        assert _records(ck) > before  # each run left more of the fit behind
    assert max(latencies) < 1.0, [round(t, 3) for t in latencies]

    logged = {name: (ck / "evals" / name).stat().st_mtime_ns for name in _records(ck)}
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["converged"] is True
    # the logged evaluations were replayed, not computed again
    assert {n: (ck / "evals" / n).stat().st_mtime_ns for n in logged} == logged
    resumed = load_model(model)
    uninterrupted = SoftmaxRegression(**_SLOW_FIT).fit(
        FileSource(slow_csv, target="label", block_rows=25)
    )
    np.testing.assert_array_equal(resumed.coef_, uninterrupted.coef_)
    np.testing.assert_array_equal(resumed.intercept_, uninterrupted.intercept_)
    # and an independent solver's optimum of the same objective
    frame = pd.read_csv(slow_csv)
    X, y = frame.drop(columns="label").to_numpy(), frame["label"].to_numpy()
    sk = LogisticRegression(C=_SLOW_FIT["C"], solver="newton-cholesky", tol=1e-12).fit(X, y)
    proba = scipy.special.softmax(X @ resumed.coef_.T + resumed.intercept_, axis=1)
    np.testing.assert_allclose(proba, sk.predict_proba(X), atol=1e-8)


# -- the --json documents, every key checked against an independent computation --------


def test_evaluate_json_schema_and_values(files, capsys):
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )

    test = files["test_frame"]
    model = load_model(files["model"])
    X_test, y_test = test.drop(columns="species"), test["species"].to_numpy()
    status, out, _ = run_cli(
        capsys,
        "evaluate",
        files["model"],
        files["test"],
        "--target",
        "species",
        "--json",
        "--bins",
        "10",
    )
    assert status == 0
    doc = json.loads(out)
    assert set(doc) == {
        "model",
        "data",
        "n_samples",
        "accuracy",
        "log_loss",
        "ece",
        "mean_confidence",
        "classes",
        "per_class",
        "macro_f1",
        "confusion_matrix",
        "unknown_labels",
        "figures",
    }
    # The probabilities from the file's coefficients and SciPy, not from predict_proba.
    from scipy.special import softmax as scipy_softmax

    proba = scipy_softmax(X_test.to_numpy() @ model.coef_.T + model.intercept_, axis=1)
    predicted = SPECIES[np.argmax(proba, axis=1)]
    assert doc["model"] == str(files["model"]) and doc["data"] == "test.csv"
    assert doc["n_samples"] == len(test) and doc["unknown_labels"] == 0 and doc["figures"] == []
    assert doc["classes"] == SPECIES.tolist()
    assert doc["accuracy"] == pytest.approx(accuracy_score(y_test, predicted), rel=1e-12)
    assert doc["log_loss"] == pytest.approx(log_loss(y_test, proba, labels=SPECIES), rel=1e-9)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_test, predicted, labels=SPECIES, zero_division=0
    )
    assert [c["class"] for c in doc["per_class"]] == SPECIES.tolist()
    for k, entry in enumerate(doc["per_class"]):
        assert set(entry) == {"class", "precision", "recall", "f1", "support"}
        assert entry["precision"] == pytest.approx(precision[k], rel=1e-12)
        assert entry["recall"] == pytest.approx(recall[k], rel=1e-12)
        assert entry["f1"] == pytest.approx(f1[k], rel=1e-12)
        assert entry["support"] == support[k]
    assert doc["macro_f1"] == pytest.approx(f1_score(y_test, predicted, average="macro"))
    assert doc["confusion_matrix"] == confusion_matrix(y_test, predicted, labels=SPECIES).tolist()
    # Top-label ECE (Guo et al. 2017) over 10 equal-width bins, computed here from scratch.
    confidence = proba.max(axis=1)
    correct = predicted == y_test
    bins = np.minimum((confidence * 10).astype(int), 9)
    ece = sum(
        abs(correct[bins == b].mean() - confidence[bins == b].mean()) * np.mean(bins == b)
        for b in range(10)
        if np.any(bins == b)
    )
    assert doc["ece"] == pytest.approx(ece, rel=1e-9)
    assert doc["mean_confidence"] == pytest.approx(confidence.mean(), rel=1e-12)
