"""TextClassifier on tiny config-built KerasHub encoders: training, phases,
layer-wise rates, weight decay, resume, .keras round trip, export and the
TensorFlow-free runtime, and one clear error per bad input."""

import os

import numpy as np
import pytest

pytest.importorskip("keras_hub")

import keras  # noqa: E402
from training_helpers import run_without_tensorflow  # noqa: E402

import kerastransfer as kt  # noqa: E402
from kerastransfer.errors import DataError, UnknownBackboneError, WeightsError  # noqa: E402
from kerastransfer.tasks.text import TransformerAdamW  # noqa: E402
from tests.text_helpers import (  # noqa: E402
    CORPUS,
    make_encoder,
    make_preprocessor,
    sentiment_task,
)

EPOCHS = 4


def _model(weights="pretrained", **kwargs):
    return kt.TextClassifier(make_encoder(), 2, sequence_length=12,
                             preprocessor=make_preprocessor(), weights=weights,
                             class_names=["neg", "pos"], **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """From scratch (weights=None: one phase, all trainable) on the synthetic
    task; checkpointed, then saved."""
    keras.utils.set_random_seed(0)
    model = _model(weights=None)
    model.compile(optimizer=TransformerAdamW(3e-3))
    x, y = sentiment_task(256, seed=0)
    xv, yv = sentiment_task(96, seed=1)
    folder = tmp_path_factory.mktemp("text")
    history = model.fit(x, y, epochs=EPOCHS, batch_size=32, validation_data=(xv, yv),
                        verbose=0, checkpoint_dir=str(folder / "ckpt"))
    return model, history, (xv, yv), folder


@pytest.fixture(scope="module")
def encoder_model():
    """One "pretrained" (phased) model shared by the phase, layer-wise rate and
    bad-input tests (each sets the state it measures)."""
    return _model()


def test_trains_to_held_out_accuracy(trained):
    model, history, (xv, yv), _ = trained
    assert [p["unfreeze"] for p in history.phases] == ["all"]
    accuracy = float(np.mean(model.predict(xv, verbose=0).argmax(1) == yv))
    assert accuracy >= 0.9, history.history
    assert model.evaluate(xv, yv, verbose=0)[1] == pytest.approx(accuracy, abs=1e-6)


def test_keras_round_trip_keeps_tokenizer_and_predictions(trained):
    model, _, (xv, _), folder = trained
    path = str(folder / "text.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, kt.TextClassifier)
    assert loaded.class_names == ["neg", "pos"] and loaded.sequence_length == 12
    np.testing.assert_array_equal(loaded.encode(xv), model.encode(xv))
    np.testing.assert_allclose(loaded.predict(xv, verbose=0),
                               model.predict(xv, verbose=0), atol=1e-6)


def test_resume_returns_stored_history_without_training(trained):
    model, history, _, folder = trained
    x, y = sentiment_task(256, seed=0)
    before = [w.copy() for w in model.get_weights()]
    again = model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0,
                      checkpoint_dir=str(folder / "ckpt"))
    assert again.history["loss"] == pytest.approx(history.history["loss"])
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_phases_top_layers_and_feature_cache(encoder_model):
    model = encoder_model
    x, y = sentiment_task(64)
    history = model.fit(x, y, epochs=1, fine_tune_epochs=1, unfreeze="top_layers:1",
                        batch_size=32, verbose=0, cache_features=True)
    assert [p["cached_features"] for p in history.phases] == [True, False]
    trainable = {layer.name for layer in model.backbone.layers
                 if layer.trainable_weights}
    assert trainable == {"transformer_layer_1", "pooled_dense"}
    # embeddings are the stem: two transformer layers, not three blocks
    with pytest.raises(ValueError, match="top 3 layers.*has 2"):
        model.unfreeze("top_layers:3")
    assert len(model.unfreeze("top_layers:2")) > len(trainable)


def test_layer_wise_rates_by_measured_update_sizes(encoder_model):
    """Adam's first step moves a weight by lr * |g| / (|g| + eps): by its
    learning rate wherever the gradient is well above eps, so per transformer
    block the largest |update| is base * decay**depth."""
    model = encoder_model
    model.unfreeze("all")
    from kerastransfer.training.loop import compile_for_phase

    model.compile(optimizer=TransformerAdamW(1e-3, weight_decay=0.0))
    compile_for_phase(model, 1e-3, 0.5)
    x, y = sentiment_task(32)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    model.train_on_batch(model.encode(x), y)

    def median_step(prefix):
        steps = [np.abs(v.numpy() - before[v.path]) for v in model.trainable_variables
                 if v.path.startswith(prefix) and v.path.endswith("kernel")]
        values = np.concatenate([s.ravel() for s in steps])
        return float(np.max(values))

    head = median_step("logits")
    top = median_step("transformer_layer_1/")
    lower = median_step("transformer_layer_0/")
    assert head == pytest.approx(1e-3, rel=0.01)
    assert top == pytest.approx(5e-4, rel=0.01)   # pooler + layer 1: depth 1
    assert lower == pytest.approx(2.5e-4, rel=0.01)


def test_adamw_skips_layernorm_and_bias():
    optimizer = TransformerAdamW(0.1, weight_decay=0.5)
    kernel = keras.Variable(np.ones((2, 2)), name="kernel")
    gamma = keras.Variable(np.ones(2), name="gamma")
    bias = keras.Variable(np.ones(2), name="bias")
    variables = [kernel, gamma, bias]
    optimizer.apply([keras.ops.zeros_like(v) for v in variables], variables)
    np.testing.assert_allclose(kernel.numpy(), 1 - 0.1 * 0.5, atol=1e-6)
    np.testing.assert_array_equal(gamma.numpy(), 1.0)
    np.testing.assert_array_equal(bias.numpy(), 1.0)
    clone = type(optimizer).from_config(optimizer.get_config())  # phases clone it
    assert clone.no_decay == ("gamma", "beta", "bias")


def test_warmup_linear_decay_schedule():
    from kerastransfer.training.schedules import WarmupLinearDecay

    schedule = WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=2)
    values = [float(schedule(step)) for step in (0, 1, 2, 6, 10, 20)]
    np.testing.assert_allclose(values, [0, 5e-4, 1e-3, 5e-4, 0, 0], atol=1e-9)
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule))
    assert float(again(6)) == pytest.approx(5e-4)


def test_mixed_precision_outputs_float32():
    model = _model(mixed_precision="mixed_bfloat16")
    out = model.predict(["a good film"], verbose=0)
    assert out.dtype == np.float32 and out.shape == (1, 2)
    assert model.backbone.dtype_policy.name == "mixed_bfloat16"


@pytest.mark.slow
def test_export_parity_int8_and_tf_free_runtime(trained):
    """One conversion: the float32 graph's parity with Keras and the dynamic
    int8 file's agreement come from the same export; the TF-free
    `TextPredictor` (a subprocess) gives exactly what onnxruntime gives on
    KerasHub's own token ids for the written file."""
    import onnxruntime as ort

    from kerastransfer.backbones.kerashub import tokenize
    from kerastransfer.export import export_onnx

    model, _, (xv, _), folder = trained
    path = str(folder / "int8.onnx")
    sentences = list(CORPUS) + xv[:20]
    report = export_onnx(model, path, quantize="dynamic", validation_data=sentences)
    assert report.max_abs_diff <= 1e-4  # the float32 graph vs Keras
    assert report.agreement >= 0.99
    assert os.path.exists(folder / "int8.tokenizer.json")
    packed = tokenize(model.preprocessor, sentences)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    expected = session.run(None, {name: packed[:, i] for i, name in enumerate(
        ("token_ids", "segment_ids", "padding_mask"))})[0]
    keras_top = model.predict(sentences, verbose=0).argmax(1)
    assert np.mean(expected.argmax(1) == keras_top) >= 0.99
    data = run_without_tensorflow(
        "from kerastransfer.runtime import TextPredictor\n"
        f"p = TextPredictor({path!r})\n"
        f"out = p.predict({sentences!r})\n"
        "result = {'out': out.tolist(),"
        " 'top': p.predict_labels(['a good film'])[0][0][0]}\n")
    np.testing.assert_allclose(data["out"], expected, atol=1e-6)
    assert data["top"] in ("neg", "pos")


# --- one clear error per bad input -----------------------------------------
def test_unknown_preset_suggests_names():
    with pytest.raises(UnknownBackboneError, match="kerashub:bert_tiny_en_uncased"):
        kt.TextClassifier("kerashub:bert_tinny_en_uncased", 2)


def test_preset_offline_says_what_to_do(monkeypatch):
    import keras_hub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(WeightsError, match="Connect to the network once"):
        kt.TextClassifier("kerashub:bert_tiny_en_uncased", 2)


@pytest.mark.parametrize("texts, message", [
    ([1, 2], "must be a string"),
    (["fine", ""], "is empty"),
    ("one string", "not one string"),
    (np.zeros((2, 32, 32, 3), "float32"), "cannot take images"),
])
def test_bad_texts(encoder_model, texts, message):
    model = encoder_model
    with pytest.raises(DataError, match=message):
        model.predict(texts, verbose=0)


def test_sequence_length_above_maximum():
    with pytest.raises(ValueError, match="maximum of 32 tokens"):
        kt.TextClassifier(make_encoder(max_sequence_length=32), 2,
                          sequence_length=64, preprocessor=make_preprocessor())


def test_backbone_instance_needs_preprocessor():
    with pytest.raises(TypeError, match="preprocessor="):
        kt.TextClassifier(make_encoder(), 2)
