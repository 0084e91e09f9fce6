"""`kerastransfer train --task audio`, then export / predict / evaluate /
benchmark on the audio model (click's CliRunner, one tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("soundfile")

from click.testing import CliRunner  # noqa: E402

from kerastransfer.cli import cli  # noqa: E402


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from kerastransfer.audio.synthetic import write_audio_folder

    root = tmp_path_factory.mktemp("audio_cli")
    write_audio_folder(str(root / "clips"), 10, duration=0.25, seed=0, broken=True)
    result = _invoke(
        "train",
        root / "clips",
        "--task",
        "audio",
        "--backbone",
        "spectrogram_cnn",
        "--weights",
        "none",
        "--duration",
        "0.25",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--validation-split",
        "0.25",
        "--out",
        root / "kws.keras",
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root, result.output


def test_train_records_the_saved_models_metrics(trained):
    root, output = trained
    record = json.loads((root / "kws.train.json").read_text())
    assert record["task"] == "audio" and record["num_validation"] == 8
    assert {p.split("/")[-1] for p in record["skipped"]} == {
        "empty.wav",
        "not_audio.wav",
    }
    import kerastransfer as kt

    model = kt.load_model(root / "kws.keras")
    assert type(model).__name__ == "AudioClassifier" and model.num_samples == 4000
    assert f"val_accuracy={record['metrics']['val_accuracy']:.4f}" in output


def test_export_predict_evaluate_benchmark(trained):
    root, _ = trained
    onnx_path = root / "kws.onnx"
    result = _invoke("export", root / "kws.keras", onnx_path)
    assert result.exit_code == 0, result.output + repr(result.exception)
    diff = float(result.output.split("max |onnx - keras| = ")[1].split()[0].rstrip(";"))
    assert diff <= 1e-4
    clip = root / "clips" / "rising"
    keras_out = _invoke("predict", root / "kws.keras", clip, "--json")
    onnx_out = _invoke("predict", onnx_path, clip, "--json")
    assert keras_out.exit_code == 0 and onnx_out.exit_code == 0, onnx_out.output
    a, b = json.loads(keras_out.stdout), json.loads(onnx_out.stdout)
    good = [r for r in b if "error" not in r]
    assert len(good) == 10 and {
        r["path"].split("/")[-1] for r in b if "error" in r
    } == {"empty.wav", "not_audio.wav"}
    for x, y in zip(a, b, strict=True):
        if "error" not in x:
            np.testing.assert_allclose(
                list(x["probabilities"].values()),
                list(y["probabilities"].values()),
                atol=1e-4,
            )
    keras_eval = _invoke("evaluate", root / "kws.keras", root / "clips", "--json")
    onnx_eval = _invoke("evaluate", onnx_path, root / "clips", "--json")
    assert onnx_eval.exit_code == 0, onnx_eval.output + repr(onnx_eval.exception)
    k, o = json.loads(keras_eval.stdout), json.loads(onnx_eval.stdout)
    assert k["num_samples"] == o["num_samples"] == 40
    assert k["accuracy"] == pytest.approx(o["accuracy"], abs=1 / 40)
    bench = _invoke("benchmark", onnx_path, "--runs", "3", "--warmup", "1", "--json")
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)["input_shape"] == [1, 4000]
