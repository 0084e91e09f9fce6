"""A catalogue of bad inputs: each gives a typed error naming the problem and the
fix (a `KerasTransferError` or a `ValueError`/`TypeError`), never a raw TensorFlow
traceback. API cases first, then CLI cases through click's `CliRunner`."""

import os
import zipfile

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.errors import (
    CheckpointError,
    DataError,
    HubModelError,
    InputShapeError,
    KerasTransferError,
    OutputPathError,
    TrainingDivergedError,
    UnknownBackboneError,
    WeightsError,
)
from kerastransfer.saving import ModelLoadError

SIZE = 32


def _backbone():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, strides=2)(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, x, name="tiny")


class Ctx:
    """Lazily built shared inputs for the cases (one per test module)."""

    def __init__(self, root):
        self.root = root
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = kt.TransferModel(_backbone(), num_classes=3,
                                           class_names=["a", "b", "c"])
        return self._model

    def images(self, n=6, size=SIZE, channels=3):
        return np.random.default_rng(0).uniform(
            0, 255, (n, size, size, channels)).astype("float32")

    def path(self, name, content=None):
        path = os.path.join(self.root, name)
        if content is not None:
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(path, mode) as f:
                f.write(content)
        return path

    def saved_model(self):
        path = os.path.join(self.root, "three.keras")
        if not os.path.exists(path):
            self.model.save(path)
        return path

    def image_folder(self, classes=("a", "b"), per_class=3, bad_file=False):
        import PIL.Image

        folder = os.path.join(self.root, "imgs_" + "_".join(classes)
                              + ("_bad" if bad_file else ""))
        for c in classes:
            os.makedirs(os.path.join(folder, c), exist_ok=True)
            for i in range(per_class):
                PIL.Image.fromarray(
                    (np.ones((40, 40, 3)) * (60 * i + 20)).astype("uint8")
                ).save(os.path.join(folder, c, f"{i}.png"))
        if bad_file:
            with open(os.path.join(folder, classes[0], "notes.png"), "w") as f:
                f.write("this is not an image")
        return folder


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Ctx(str(tmp_path_factory.mktemp("bad_inputs")))


def _fit(ctx, x, y, **kwargs):
    kwargs.setdefault("verbose", 0)
    return ctx.model.fit(x, y, epochs=1, **kwargs)


def _truncated_keras(ctx):
    src = ctx.saved_model()
    data = open(src, "rb").read()
    return ctx.path("truncated.keras", data[: len(data) // 2])


def _keras_with_missing_weights(ctx):
    src = ctx.saved_model()
    dst = ctx.path("noweights.keras")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if not item.filename.endswith(".h5"):
                zout.writestr(item, zin.read(item.filename))
    return dst


def _onnx_predictor(path):
    from kerastransfer.runtime import OnnxPredictor

    return OnnxPredictor(path)


def _fit_image_data_with_other_classes(ctx):
    from kerastransfer.data import load_image_folder

    data = load_image_folder(ctx.image_folder(("a", "b")), image_size=(SIZE, SIZE),
                             batch_size=2, validation_split=0.0)
    loaded = kt.load_model(ctx.saved_model())  # 3 classes
    return loaded.fit(data, epochs=1, verbose=0)


# (id, callable(ctx), expected error class, regex the message must match)
API_CASES = [
    # --- model construction -------------------------------------------------
    ("unknown_backbone", lambda c: kt.TransferModel("resnet5", 2, weights=None),
     UnknownBackboneError, r"Unknown backbone\. Did you mean: .*ResNet50.*"
                           r"Received: name='resnet5'"),
    ("backbone_wrong_type", lambda c: kt.TransferModel(42, 2),
     TypeError, r"backbone must be a registry name.*Received: backbone=42"),
    ("image_below_minimum",
     lambda c: kt.TransferModel("resnet50", 2, weights=None, input_shape=(16, 16, 3)),
     InputShapeError, r"needs images of at least 32x32 pixels.*Resize"),
    ("input_shape_rank",
     lambda c: kt.TransferModel("mobilenet_v3_small", 2, weights=None,
                                input_shape=(64, 64)),
     InputShapeError, r"input_shape must be \(height, width, channels\)"),
    ("weights_file_missing",
     lambda c: kt.TransferModel("mobilenet_v3_small", 2, input_shape=(32, 32, 3),
                                weights=c.path("nope.weights.h5")),
     WeightsError, r"Weights file not found.*Received: weights="),
    ("weights_unknown_name",
     lambda c: kt.TransferModel("mobilenet_v3_small", 2, input_shape=(32, 32, 3),
                                weights="imagenet21k"),
     WeightsError, r"weights must be 'imagenet', None, or the path"),
    ("weights_file_corrupt",
     lambda c: kt.TransferModel("mobilenet_v3_small", 2, input_shape=(32, 32, 3),
                                weights=c.path("bad.weights.h5", b"not hdf5")),
     WeightsError, r"does not fit backbone .*not corrupt"),
    ("weights_wrong_type",
     lambda c: kt.TransferModel("mobilenet_v3_small", 2, input_shape=(32, 32, 3),
                                weights=c.path("w.txt", "x")),
     WeightsError, r"Unsupported weights file type"),
    ("one_class_multiclass", lambda c: kt.TransferModel(_backbone(), 1),
     ValueError, r"multiclass head needs num_classes >= 2.*num_classes=2"),
    ("num_classes_str", lambda c: kt.TransferModel(_backbone(), "3"),
     TypeError, r"num_classes must be an int\. Received: num_classes='3'"),
    ("class_names_count",
     lambda c: kt.TransferModel(_backbone(), 3, class_names=["a", "b"]),
     ValueError, r"class_names has 2 names but num_classes is 3"),
    ("class_names_duplicate",
     lambda c: kt.TransferModel(_backbone(), class_names=["a", "a"]),
     ValueError, r"class_names must be unique"),
    ("unknown_task", lambda c: kt.TransferModel(_backbone(), 2, task="classify"),
     ValueError, r"task must be one of .*Received: task='classify'"),
    ("unknown_pooling", lambda c: kt.TransferModel(_backbone(), 2, pooling="mean"),
     ValueError, r"pooling must be one of"),
    ("dropout_out_of_range", lambda c: kt.TransferModel(_backbone(), 2, dropout=1.5),
     ValueError, r"dropout must be in \[0, 1\)"),
    ("mixed_precision_name",
     lambda c: kt.TransferModel(_backbone(), 2, mixed_precision="float16"),
     ValueError, r"mixed_precision must be one of"),
    ("hub_handle_missing",
     lambda c: kt.TransferModel("tfhub:" + c.path("no_such_hub_model"), 2),
     HubModelError, r"handle does not resolve.*does not exist\. Pass an existing"),
    # --- fit data -------------------------------------------------------------
    ("images_wrong_size", lambda c: _fit(c, c.images(size=48), np.zeros(6, int)),
     DataError, r"Inputs must have shape \(batch, 32, 32, 3\).*Received: x.shape"),
    ("images_wrong_channels",
     lambda c: _fit(c, c.images(channels=1), np.zeros(6, int)),
     DataError, r"Inputs must have shape"),
    ("images_no_batch_axis", lambda c: _fit(c, c.images()[0], np.zeros(1, int)),
     DataError, r"Inputs must have shape"),
    ("empty_data", lambda c: _fit(c, c.images(n=0), np.zeros(0, int)),
     DataError, r"The training data is empty"),
    ("labels_out_of_range",
     lambda c: _fit(c, c.images(), np.array([0, 1, 2, 3, 0, 1])),
     DataError, r"Labels must be in \[0, 2\] for num_classes=3.*\[0, 3\]"),
    ("labels_negative", lambda c: _fit(c, c.images(), np.array([-1, 0, 1] * 2)),
     DataError, r"Labels must be in \[0, 2\]"),
    ("labels_fractional", lambda c: _fit(c, c.images(), np.array([0.5, 1, 2] * 2)),
     DataError, r"integer class indices"),
    ("labels_count_mismatch", lambda c: _fit(c, c.images(), np.array([0, 1, 2])),
     DataError, r"one label per example\. Received: 6 inputs and 3 labels"),
    ("one_class_only", lambda c: _fit(c, c.images(), np.zeros(6, int)),
     DataError, r"only one class \(0\).*at least two classes"),
    ("string_images",
     lambda c: _fit(c, np.full((2, SIZE, SIZE, 3), "x"), np.array([0, 1])),
     DataError, r"Inputs must be real numbers.*Received: x.dtype=<U1"),
    ("nan_images",
     lambda c: _fit(c, np.where(np.arange(6)[:, None, None, None] == 2, np.nan,
                                c.images()).astype("float32"), np.array([0, 1, 2] * 2)),
     DataError, r"NaN or Inf values.*Received: 3072 non-finite values"),
    ("negative_epochs", lambda c: c.model.fit(c.images(), np.array([0, 1, 2] * 2),
                                              epochs=-1),
     ValueError, r"epochs must be a whole number >= 0\. Received: epochs=-1"),
    ("bad_unfreeze_rule",
     lambda c: c.model.fit(c.images(), np.array([0, 1, 2] * 2), unfreeze="top:abc",
                           fine_tune_epochs=1),
     ValueError, r"needs a positive whole number"),
    ("lr_decay_out_of_range",
     lambda c: c.model.fit(c.images(), np.array([0, 1, 2] * 2), lr_decay=2.0,
                           fine_tune_epochs=1),
     ValueError, r"lr_decay must be in \(0, 1\]"),
    ("checkpoint_dir_is_file",
     lambda c: _fit(c, c.images(), np.array([0, 1, 2] * 2),
                    checkpoint_dir=c.path("file.txt", "x")),
     CheckpointError, r"checkpoint_dir must be a folder"),
    ("mismatched_classes_on_reload", _fit_image_data_with_other_classes,
     DataError, r"has 2 classes .*num_classes=3.*class_names=data.class_names"),
    # --- files ----------------------------------------------------------------
    ("load_missing_file", lambda c: kt.load_model(c.path("missing.keras")),
     ModelLoadError, r"Model file not found"),
    ("load_wrong_extension", lambda c: kt.load_model(c.path("model.h5", b"x")),
     ModelLoadError, r"Expected a \.keras model file"),
    ("load_not_a_zip", lambda c: kt.load_model(c.path("garbage.keras", b"garbage")),
     ModelLoadError, r"not a valid \.keras archive"),
    ("load_truncated", lambda c: kt.load_model(_truncated_keras(c)),
     ModelLoadError, r"corrupt"),
    ("load_archive_without_weights",
     lambda c: kt.load_model(_keras_with_missing_weights(c)),
     ModelLoadError, r"Could not load the model.*may be corrupt"),
    ("save_into_missing_folder",
     lambda c: c.model.save(os.path.join(c.root, "no", "such", "dir", "m.keras")),
     OutputPathError, r"output folder does not exist\. Create it first"),
    ("save_under_a_file",
     lambda c: c.model.save(os.path.join(c.path("plain.txt", "x"), "m.keras")),
     OutputPathError, r"output folder does not exist"),
    ("save_wrong_extension", lambda c: c.model.save(c.path("m.h5")),
     ValueError, r"writes the \.keras format"),
    ("onnx_corrupt", lambda c: _onnx_predictor(c.path("bad.onnx", b"not onnx")),
     ModelLoadError, r"cannot load this ONNX model.*export it again"),
    ("onnx_missing", lambda c: _onnx_predictor(c.path("missing.onnx")),
     FileNotFoundError, r"No ONNX model at this path\. Export one"),
    ("image_folder_one_class",
     lambda c: __import__("kerastransfer.data", fromlist=["x"]).load_image_folder(
         c.image_folder(("only",)), image_size=(SIZE, SIZE)),
     DataError, r"class"),
    ("image_folder_strict_non_image",
     lambda c: __import__("kerastransfer.data", fromlist=["x"]).load_image_folder(
         c.image_folder(bad_file=True), image_size=(SIZE, SIZE), strict=True),
     DataError, r"notes\.png"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(case, ctx):
    _, call, error_type, pattern = case
    with pytest.raises(error_type, match=pattern) as info:
        call(ctx)
    error = info.value
    assert isinstance(error, (KerasTransferError, ValueError, TypeError, OSError))
    assert "Traceback" not in str(error)
    assert type(error).__module__.split(".")[0] not in ("tensorflow", "keras")


def test_catalogue_size():
    assert len(API_CASES) + len(CLI_CASES) >= 30
    assert len({c[0] for c in API_CASES + CLI_CASES}) == len(API_CASES) + len(CLI_CASES)


def test_training_diverged_error_is_typed():
    assert issubclass(TrainingDivergedError, KerasTransferError)


# --- CLI ------------------------------------------------------------------------
def _cli_args(c, *args):
    return [a(c) if callable(a) else a for a in args]


CLI_CASES = [
    ("cli_train_missing_dir", ("train", lambda c: c.path("nowhere")),
     2, r"does not exist"),
    ("cli_train_unknown_backbone",
     ("train", lambda c: c.image_folder(), "--backbone", "resnet5", "--weights",
      "none", "--image-size", "32", "--out", lambda c: c.path("cli.keras")),
     2, r"Unknown backbone\. Did you mean"),
    ("cli_train_image_too_small",
     ("train", lambda c: c.image_folder(), "--backbone", "resnet50", "--weights",
      "none", "--image-size", "8", "--out", lambda c: c.path("cli.keras")),
     2, r"at least 32x32 pixels"),
    ("cli_train_bad_image_size", ("train", lambda c: c.image_folder(),
                                  "--image-size", "big"),
     2, r"Expected a positive size"),
    ("cli_train_negative_epochs", ("train", lambda c: c.image_folder(),
                                   "--epochs", "-1"),
     2, r"-1 is not in the range"),
    ("cli_train_zero_lr", ("train", lambda c: c.image_folder(),
                           "--learning-rate", "0"),
     2, r"learning-rate"),
    ("cli_train_weights_missing", ("train", lambda c: c.image_folder(),
                                   "--weights", "/no/such/file.h5"),
     2, r"Expected 'imagenet', 'none' or the path"),
    ("cli_train_out_folder_missing",
     ("train", lambda c: c.image_folder(), "--out", "/no/such/dir/model.keras"),
     2, r"output folder does not exist"),
    ("cli_export_corrupt_keras",
     ("export", lambda c: c.path("garbage2.keras", b"garbage"),
      lambda c: c.path("out.onnx")),
     1, r"not a valid \.keras archive"),
    ("cli_export_wrong_out_ext",
     ("export", lambda c: c.saved_model(), lambda c: c.path("out.txt")),
     2, r"must end with \.onnx"),
    ("cli_info_text_file", ("info", lambda c: c.path("readme.txt", "hello")),
     2, r"Expected a \.keras or \.onnx model file"),
    ("cli_info_corrupt_onnx", ("info", lambda c: c.path("bad2.onnx", b"not onnx")),
     1, r"."),
    ("cli_predict_non_image",
     ("predict", lambda c: c.saved_model(), lambda c: c.path("notimage.png", "text")),
     1, r"notimage\.png"),
    ("cli_evaluate_class_mismatch",
     ("evaluate", lambda c: c.saved_model(), lambda c: c.image_folder(("a", "x"))),
     1, r"classes the model does not know: \['x'\]"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, ctx):
    from click.testing import CliRunner

    from kerastransfer.cli import cli

    _, args, exit_code, pattern = case
    result = CliRunner().invoke(cli, _cli_args(ctx, *args), catch_exceptions=False)
    output = result.output
    assert result.exit_code == exit_code, output
    assert "Traceback" not in output
    assert "Unexpected" not in output
    import re

    assert re.search(pattern, output), output
