"""`kt.TextClassifier("tfhub:<handle>")`: a TF-Hub string-input model on the
existing TF-Hub path (`kerastransfer/tasks/text_hub.py`), on a tiny
SavedModel the test writes (tests/hub_fixtures.py): nothing is downloaded."""

import numpy as np
import pytest
from hub_fixtures import make_image_hub, make_text_hub

import kerastransfer as kt
from kerastransfer.data.text import TextData
from kerastransfer.errors import ExportError, WeightsError
from kerastransfer.tasks.text_hub import HubTextClassifier

POSITIVE = ["good great movie", "great fun film", "really good story",
            "fun and great", "good acting great plot", "a great good time"]
NEGATIVE = ["bad awful movie", "awful boring film", "really bad story",
            "boring and awful", "bad acting awful plot", "a boring bad time"]


@pytest.fixture(scope="module")
def text_hub(tmp_path_factory):
    return "tfhub:" + make_text_hub(tmp_path_factory.mktemp("hub") / "text")


def test_tfhub_text_model_trains_predicts_and_round_trips(text_hub, tmp_path):
    model = kt.TextClassifier(text_hub, class_names=["neg", "pos"], dropout=0.0)
    assert isinstance(model, HubTextClassifier)
    assert model.input_dtype_name == "string"
    texts = NEGATIVE + POSITIVE  # plain lists of str, as a KerasHub model takes
    labels = np.array([0] * 6 + [1] * 6)
    data = TextData(train=(texts, labels), validation=(texts[:4], labels[:4]),
                    class_names=["neg", "pos"])
    history = model.fit(data, epochs=5, fine_tune_epochs=30, learning_rate=0.05,
                        fine_tune_lr=0.05, batch_size=12, verbose=0)
    assert "val_loss" in history.history
    probabilities = model.predict(texts, verbose=0)
    assert probabilities.shape == (12, 2)
    assert float(np.mean(probabilities.argmax(1) == labels)) == 1.0
    loss, accuracy = model.evaluate(texts, labels, verbose=0)
    assert accuracy == 1.0
    with pytest.raises(kt.errors.DataError, match="empty"):
        model.predict(["good", " "], verbose=0)
    model.save(tmp_path / "hub_text.keras")
    loaded = kt.load_model(tmp_path / "hub_text.keras")
    assert isinstance(loaded, HubTextClassifier)
    np.testing.assert_allclose(loaded.predict(texts, verbose=0), probabilities,
                               atol=1e-6)
    from kerastransfer.export import export_onnx

    with pytest.raises(ExportError, match="string inputs"):
        export_onnx(model, tmp_path / "hub_text.onnx")


def test_tfhub_text_model_errors(text_hub, tmp_path):
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good"])
    with pytest.raises(TypeError, match="tokenizes inside its SavedModel"):
        kt.TextClassifier(text_hub, 2, preprocessor=keras_hub.models.
                          BertTextClassifierPreprocessor(tokenizer))
    with pytest.raises(WeightsError, match="its own weights"):
        kt.TextClassifier(text_hub, 2, weights=None)
    image_hub = "tfhub:" + make_image_hub(tmp_path / "image")
    with pytest.raises(TypeError, match="takes float32 images"):
        kt.TextClassifier(image_hub, 2)
