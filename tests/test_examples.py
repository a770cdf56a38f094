"""The examples run and do what they say (imported and called, with short settings)."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_trainer_converges_to_the_eigenvalue_2_from_ten_threads(capsys):
    estimates = _load("example_trainer").main(["--steps", "40"])
    assert len(estimates) == 10
    np.testing.assert_allclose(estimates, 2.0, atol=1e-4)
    assert "thread 9: lambda = 2.0000" in capsys.readouterr().out


def test_cnn_forward_pass_shapes_and_probabilities(capsys):
    probs = _load("cnn_forward").main()
    assert probs.shape == (4, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    out = capsys.readouterr().out
    assert "static shape [?, 14, 14, 8]" in out and "static shape [?, 1568]" in out


def test_train_cnn_learns_and_its_checkpoint_restores(capsys):
    acc, restored = _load("train_cnn").main(["--epochs", "3", "--train", "900", "--test",
                                             "300"])
    assert acc > 0.9, capsys.readouterr().out
    assert restored == acc
    out = capsys.readouterr().out
    assert out.count("examples/s") == 3 and "restored session test accuracy" in out


def test_gradients_example_checks_first_and_second_derivatives(capsys):
    err, err2 = _load("gradients").main()
    assert err < 1e-6 and err2 < 1e-6
    assert "gradients/BiasAddGrad" in capsys.readouterr().out


def test_upsample_decoder_learns_and_writes_a_png(tmp_path, capsys):
    png = tmp_path / "grid.png"
    mse = _load("upsample_decoder").main(["--target", "0.06", "--max-epochs", "12",
                                          "--train", "500", "--png", str(png)])
    assert mse < 0.06, capsys.readouterr().out      # below the input noise variance 0.0625
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
