"""OnnxPredictor: TensorFlow-free inference on arrays, files and folders."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from training_helpers import run_without_tensorflow

import kerastransfer as kt
from kerastransfer.export import export_onnx
from kerastransfer.runtime import OnnxPredictor, decode_images, list_image_files
from kerastransfer.training.batchnorm import recalibrate_batchnorm

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(3)
    model = kt.TransferModel("mobilenet_v2", num_classes=3, weights=None,
                             input_shape=(SIZE, SIZE, 3),
                             class_names=["red", "green", "blue"])
    rng = np.random.default_rng(0)
    recalibrate_batchnorm(model, rng.uniform(0, 255, (8, SIZE, SIZE, 3)),
                          layers="backbone")
    path = str(tmp_path_factory.mktemp("rt") / "model.onnx")
    export_onnx(model, path)
    return model, path


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(
        folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(
        folder / "sub" / "b.jpg", quality=95)
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(
        folder / "c_gray.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_import_and_predict_without_tensorflow(exported, image_folder):
    _, path = exported
    result = run_without_tensorflow(
        "import numpy as np\n"
        "import kerastransfer.runtime as rt\n"
        f"p = rt.OnnxPredictor({path!r})\n"
        f"out = p.predict(np.zeros((2, {SIZE}, {SIZE}, 3), 'uint8'))\n"
        f"res = p.predict_files({str(image_folder)!r}, top_k=2)\n"
        "result = {'shape': list(out.shape), 'files': len(res)}\n")
    assert result == {"shape": [2, 3], "files": 3}


def test_predict_matches_keras(exported):
    model, path = exported
    predictor = OnnxPredictor(path)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (7, SIZE, SIZE, 3)).astype("uint8")
    expected = np.asarray(model(x.astype("float32")))
    np.testing.assert_allclose(predictor.predict(x), expected, atol=1e-4)
    np.testing.assert_allclose(predictor.predict(x.astype("float64"), batch_size=3),
                               expected, atol=1e-4)
    single = predictor.predict(x[0])
    assert single.shape == (1, 3)
    np.testing.assert_allclose(single[0], expected[0], atol=1e-4)


def test_properties_and_providers(exported):
    _, path = exported
    predictor = OnnxPredictor(path, intra_op_threads=1)
    assert predictor.providers == ["CPUExecutionProvider"]
    assert predictor.class_names == ["red", "green", "blue"]
    assert predictor.input_shape == (SIZE, SIZE, 3)
    assert predictor.task == "multiclass"
    assert predictor.metadata["backbone"] == "mobilenet_v2"
    assert "input_shape=(32, 32, 3)" in repr(predictor)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, SIZE, SIZE, 1)), "3 channels"),
    (np.zeros((2, SIZE + 1, SIZE, 3)), "32x32 pixels"),
    (np.zeros((SIZE, SIZE)), "one image"),
    (np.zeros((1, 2, SIZE, SIZE, 3)), "one image"),
    (np.array([["a"]]), "numeric array"),
])
def test_predict_rejects_bad_shapes(exported, bad, match):
    predictor = OnnxPredictor(exported[1])
    with pytest.raises(ValueError, match=match):
        predictor.predict(bad)


def test_bad_constructor_arguments(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="No ONNX model"):
        OnnxPredictor(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="not available"):
        OnnxPredictor(exported[1], providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="intra_op_threads"):
        OnnxPredictor(exported[1], intra_op_threads=0)


def test_predict_files_folder_with_corrupt_file(exported, image_folder, caplog):
    model, path = exported
    predictor = OnnxPredictor(path)
    with caplog.at_level("WARNING", logger="kerastransfer.runtime"):
        results = predictor.predict_files(image_folder, top_k=2, batch_size=2)
    names = [os.path.relpath(r["path"], image_folder) for r in results]
    assert names == ["a.png", "c_gray.png", os.path.join("sub", "b.jpg")]
    assert [os.path.basename(p) for p, _ in predictor.skipped] == ["broken.jpg"]
    assert "broken.jpg" in caplog.text
    for result in results:
        assert len(result["top_k"]) == 2
        probs = result["probabilities"]
        assert abs(float(probs.sum()) - 1.0) < 1e-5
        best = int(np.argmax(probs))
        assert result["top_k"][0] == (predictor.class_names[best],
                                      pytest.approx(float(probs[best])))
        assert result["top_k"][0][1] >= result["top_k"][1][1]
    # the resized JPEG gives what Keras gives on the same decoded pixels
    with Image.open(image_folder / "sub" / "b.jpg") as image:
        pixels = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR),
                            dtype="float32")
    np.testing.assert_allclose(results[2]["probabilities"],
                               np.asarray(model(pixels[None]))[0], atol=1e-4)


def test_predict_files_list_and_missing(exported, image_folder):
    predictor = OnnxPredictor(exported[1])
    results = predictor.predict_files([image_folder / "a.png"], top_k=10)
    assert len(results) == 1 and len(results[0]["top_k"]) == 3
    with pytest.raises(FileNotFoundError, match="missing.png"):
        predictor.predict_files([image_folder / "missing.png"])
    with pytest.raises(ValueError, match="top_k"):
        predictor.predict_files(image_folder, top_k=0)


def test_list_and_decode_helpers(image_folder):
    paths = list_image_files(image_folder)
    assert [os.path.basename(p) for p in paths] == [
        "a.png", "broken.jpg", "c_gray.png", "b.jpg"]
    images, failed = decode_images(paths, (16, 24))
    assert images.shape == (3, 16, 24, 3) and images.dtype == np.float32
    assert len(failed) == 1 and failed[0][0].endswith("broken.jpg")


def test_stripped_metadata_is_read_from_the_sidecar(exported, tmp_path, caplog):
    """OpenCV/onnxruntime-node users strip or ignore ONNX metadata: the predictor
    reads the model.json written next to the model instead."""
    import onnx

    model, path = exported
    sidecar = os.path.splitext(path)[0] + ".json"
    with open(sidecar) as file:
        written = json.load(file)
    assert written == OnnxPredictor(path).metadata  # the same contract, decoded
    proto = onnx.load(path)
    del proto.metadata_props[:]
    stripped = tmp_path / "stripped.onnx"
    onnx.save(proto, str(stripped))
    (tmp_path / "stripped.json").write_text(json.dumps(written))
    predictor = OnnxPredictor(stripped)
    assert predictor.metadata_source == "sidecar"
    assert predictor.class_names == ["red", "green", "blue"]
    assert predictor.input_shape == (SIZE, SIZE, 3)
    x = np.random.default_rng(2).integers(0, 256, (2, SIZE, SIZE, 3), "uint8")
    np.testing.assert_allclose(predictor.predict(x), np.asarray(model(
        x.astype("float32"))), atol=1e-4)
    # Without the sidecar: the documented fallback, with a warning naming it.
    (tmp_path / "stripped.json").unlink()
    with caplog.at_level("WARNING", logger="kerastransfer.runtime"):
        bare = OnnxPredictor(stripped)
    assert bare.metadata_source == "none" and bare.metadata == {}
    assert bare.class_names == ["0", "1", "2"]
    assert "stripped.json" in caplog.text
    (tmp_path / "stripped.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        OnnxPredictor(stripped)


def test_rank_classes_is_the_one_top_k():
    from kerastransfer.runtime import rank_classes

    scores = np.array([0.1, 0.4, 0.1, 0.4], "float32")
    assert rank_classes(scores, ["a", "b", "c"], 3) == [
        (1, "b", pytest.approx(0.4)), (3, "3", pytest.approx(0.4)),
        (0, "a", pytest.approx(0.1))]  # ties in class order; unnamed by index
    assert len(rank_classes(scores, "abcd", 10)) == 4


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch", "unit", "none"])
def test_numpy_preprocessing_matches_the_keras_layer(mode):
    from kerastransfer.preprocessing import ImagePreprocessing
    from kerastransfer.runtime import preprocess_images

    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 5, 3)).astype("float32")
    np.testing.assert_allclose(preprocess_images(x, mode),
                               np.asarray(ImagePreprocessing(mode)(x)), atol=1e-5)
