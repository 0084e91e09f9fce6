"""Text models through the CLI (train --task text, predict, evaluate, export on
.keras and .onnx) and the edge service ({"texts": [...]}), on one tiny
config-built encoder saved as a local KerasHub preset folder (offline)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("keras_hub")
pytest.importorskip("tokenizers")
falcon_testing = pytest.importorskip("falcon.testing")

from click.testing import CliRunner  # noqa: E402

from kerastransfer.cli import cli  # noqa: E402
from tests.text_helpers import make_encoder, make_preprocessor, sentiment_task  # noqa: E402


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def _write_csv(path, texts, labels):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        writer.writerows(zip(texts, labels, strict=True))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`train --task text` on a CSV with the tiny encoder as a local preset,
    then `export` to ONNX."""
    root = tmp_path_factory.mktemp("text_cli")
    preset = root / "preset"
    make_encoder().save_to_preset(str(preset))
    make_preprocessor(16).save_to_preset(str(preset))
    texts, labels = sentiment_task(160, seed=0)
    names = np.array(["neg", "pos"])[labels]
    _write_csv(root / "train.csv", texts + [""], list(names) + ["pos"])  # one bad row
    test_texts, test_labels = sentiment_task(40, seed=3)
    _write_csv(root / "test.csv", test_texts, np.array(["neg", "pos"])[test_labels])
    result = _invoke("train", root / "train.csv", "--task", "text",
                     "--text-column", "review", "--label-column", "sentiment",
                     "--backbone", f"kerashub:{preset}", "--weights", "none",
                     "--sequence-length", "12", "--epochs", "3",
                     "--learning-rate", "0.003", "--batch-size", "32",
                     "--validation-split", "0.25", "--out", root / "text.keras")
    assert result.exit_code == 0, result.output
    exported = _invoke("export", root / "text.keras", root / "text.onnx")
    assert exported.exit_code == 0, exported.output
    return root, result.output, exported.output


def test_train_records_the_saved_models_metrics(trained):
    import keras

    from kerastransfer.data.text import load_text_csv

    root, output, _ = trained
    record = json.loads((root / "text.train.json").read_text())
    assert record["task"] == "text" and record["class_names"] == ["neg", "pos"]
    assert record["num_train"] + record["num_validation"] == 160
    assert len(record["skipped"]) == 1  # the empty text, reported
    model = keras.saving.load_model(root / "text.keras")
    assert model.sequence_length == 12
    data = load_text_csv(root / "train.csv", text_column="review",
                         label_column="sentiment", validation_split=0.25, seed=1337)
    accuracy = model.evaluate(*data.validation, return_dict=True, verbose=0)["accuracy"]
    assert record["metrics"]["val_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert f"val_accuracy={accuracy:.4f}" in output


def test_export_validates_on_the_training_texts(trained):
    root, _, output = trained
    assert "validated on 32 real texts from" in output and "train.csv" in output
    diff = float(output.split("max |onnx - keras| = ")[1].split()[0].rstrip(";"))
    assert diff <= 1e-4
    assert (root / "text.tokenizer.json").exists()


def test_predict_keras_equals_onnx(trained):
    root, _, _ = trained
    lines = root / "texts.txt"
    lines.write_text("a good film\n\nthe plot was awful and dull\n")
    outputs = []
    for model in ("text.keras", "text.onnx"):
        result = _invoke("predict", root / model, lines, root / "test.csv",
                         "--text-column", "review", "--json", "--top-k", "1")
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.output))
    keras_out, onnx_out = outputs
    assert len(keras_out) == 2 + 40  # the empty line is not a text
    assert keras_out[0]["text"] == "a good film"
    for a, b in zip(keras_out, onnx_out, strict=True):
        assert a["text"] == b["text"]
        np.testing.assert_allclose(list(a["probabilities"].values()),
                                   list(b["probabilities"].values()), atol=1e-4)
    plain = _invoke("predict", root / "text.onnx", lines)
    assert plain.output.splitlines()[0].startswith("a good film: ")


def test_evaluate_keras_and_onnx_agree_with_the_model(trained):
    import keras

    root, _, _ = trained
    model = keras.saving.load_model(root / "text.keras")
    texts, labels = sentiment_task(40, seed=3)
    expected = float(np.mean(model.predict(texts, verbose=0).argmax(1) == labels))
    for name in ("text.keras", "text.onnx"):
        result = _invoke("evaluate", root / name, root / "test.csv", "--text-column",
                         "review", "--label-column", "sentiment", "--json")
        assert result.exit_code == 0, result.output
        metrics = json.loads(result.output)
        assert metrics["num_samples"] == 40
        assert metrics["accuracy"] == pytest.approx(expected, abs=1e-9)


def test_cli_errors_are_one_line(trained):
    root, _, _ = trained
    bad_column = _invoke("predict", root / "text.onnx", root / "test.csv")
    assert bad_column.exit_code == 2 and "no 'text' column" in bad_column.output
    not_csv = _invoke("train", root, "--task", "text", "--backbone", "kerashub:x")
    assert not_csv.exit_code == 2 and "CSV file" in not_csv.output
    image_backbone = _invoke("train", root / "test.csv", "--task", "text")
    assert image_backbone.exit_code == 2 and "kerashub:" in image_backbone.output
    folder_task = _invoke("train", root / "test.csv")
    assert folder_task.exit_code == 2 and "--task text" in folder_task.output


def test_info_and_benchmark_on_text_models(trained):
    root, _, _ = trained
    onnx_info = json.loads(_invoke("info", root / "text.onnx", "--json").output)
    assert onnx_info["class_names"] == ["neg", "pos"]
    assert onnx_info["metadata"]["kind"] == "text"
    assert [i["name"] for i in onnx_info["inputs"]] == ["token_ids", "segment_ids",
                                                        "padding_mask"]
    keras_info = json.loads(_invoke("info", root / "text.keras", "--json").output)
    assert keras_info["input"]["dtype"] == "string"
    assert "12 int32 token ids" in keras_info["input"]["range"]
    result = _invoke("benchmark", root / "text.onnx", "--batch-size", "4", "--runs",
                     "3", "--warmup", "1", "--json")
    assert result.exit_code == 0, result.output
    timing = json.loads(result.stdout)  # progress goes to stderr
    assert timing["input_shape"] == [4, 12] and timing["p50_ms"] > 0
    plain = _invoke("benchmark", root / "text.onnx", "--runs", "2", "--warmup", "0")
    assert "1 texts of 12 random vocabulary words" in plain.output


# --- the edge service ---------------------------------------------------------
@pytest.fixture(scope="module")
def client(trained):
    from export.service import Limits, create_app
    from kerastransfer.runtime.text import TextPredictor, is_text_model

    root, _, _ = trained
    assert is_text_model(root / "text.onnx")
    predictor = TextPredictor(root / "text.onnx")
    limits = Limits(max_batch=4, max_text_chars=200, max_body_bytes=4096)
    return falcon_testing.TestClient(create_app(predictor, limits)), predictor


def test_service_answers_texts_like_the_predictor(client):
    client, predictor = client
    texts = ["a good film", "the plot was awful", "Café au lait!"]
    result = client.simulate_post("/predict?probabilities=true&top_k=2",
                                  json={"texts": texts})
    assert result.status_code == 200, result.text
    predictions = result.json["predictions"]
    expected = predictor.predict(texts)
    for entry, row in zip(predictions, expected, strict=True):
        np.testing.assert_allclose(entry["probabilities"], row, atol=1e-6)
        assert entry["top_k"][0]["class_name"] == predictor.class_names[row.argmax()]
        assert len(entry["top_k"]) == 2
    metadata = client.simulate_get("/metadata").json
    assert metadata["input"].startswith('JSON {"texts"')
    assert metadata["class_names"] == ["neg", "pos"]


@pytest.mark.parametrize("body, status, message", [
    ({"texts": "one text"}, 400, "must be a list of strings"),
    ({"texts": []}, 400, "Received: 0"),
    ({"texts": ["a"] * 5}, 413, "Send 1 to 4 texts"),
    ({"texts": ["fine", 3]}, 400, "texts[1] is int"),
    ({"texts": ["fine", "  "]}, 400, "Text 1 is empty"),
    ({"texts": ["x" * 201]}, 413, "limit is 200"),
    ({"instances": [[1]]}, 400, '"texts"'),
    ({"texts": ["fine"], "top_k": 0}, 400, "top_k must be"),
    ({"texts": ["x " * 2100]}, 413, "Request body too large"),
])
def test_service_text_errors_are_json(client, body, status, message):
    client, _ = client
    result = client.simulate_post("/predict", json=body)
    assert result.status_code == status, result.text
    assert message in result.json["error"]["message"]


def test_service_text_model_refuses_images(client):
    client, _ = client
    result = client.simulate_post("/predict", body=b"\x89PNG....",
                                  headers={"Content-Type": "image/png"})
    assert result.status_code == 415
    assert "This is a text model" in result.json["error"]["message"]


def test_relative_local_preset_folder(trained, monkeypatch):
    """`kerashub:tiny_preset` (a folder in the working directory, no '/') is a
    local preset, not an unknown registry name (failed before: 'Unknown
    KerasHub text preset')."""
    from kerastransfer.backbones.kerashub import load_preset

    root, _, _ = trained
    monkeypatch.chdir(root)
    backbone, preprocessor = load_preset("kerashub:preset")
    assert backbone.num_layers == 2 and preprocessor.sequence_length == 16
