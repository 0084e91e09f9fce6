"""Prediction letterboxes as training does (issue 16): `DetectionModel.predict`
and `DetectionPredictor` show the model an image of another size exactly as
`load_detection_data` would (aspect ratio kept, gray padding) and answer boxes
in the image's own pixels; the one implementation is
`kerastransfer/runtime/letterbox.py`."""

import keras
import numpy as np
import pytest
from PIL import Image
from training_helpers import tiny_pyramid

import kerastransfer as kt
from kerastransfer.runtime.detection import DetectionPredictor, prepare_images
from kerastransfer.runtime.letterbox import (
    LETTERBOX_FILL,
    letterbox_array,
    letterbox_geometry,
    unletterbox_boxes,
)

SIZE = 32


def scene(rng, row, col, side=10):
    """A 32x32 noise image with one bright square at (row, col)."""
    image = rng.normal(100, 10, (SIZE, SIZE, 3))
    image[row:row + side, col:col + side] = 235
    return np.clip(image, 0, 255).astype("float32")


def upsample2(image):
    return image.repeat(2, 0).repeat(2, 1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-class detector of bright squares, and its ONNX export."""
    from kerastransfer.export import export_onnx

    rng = np.random.default_rng(0)
    images, targets = [], []
    for _ in range(48):
        side = int(rng.integers(8, 13))
        row, col = rng.integers(0, SIZE - side, 2)
        images.append(scene(rng, row, col, side))
        targets.append({"boxes": np.asarray([[col, row, col + side, row + side]],
                                            "float32"),
                        "labels": np.asarray([0], "int32")})
    x = np.stack(images)
    keras.utils.set_random_seed(1)
    model = kt.DetectionModel(tiny_pyramid(), 1, class_names=["square"],
                              filters=16, head_convs=1, preprocessing="tf")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, targets, epochs=25, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("letterbox") / "det.onnx"
    export_onnx(model, path, validation_data=(x[:4], targets[:4]))
    return model, DetectionPredictor(path)


def top_box(detect, image):
    found = detect([image], score_threshold=0.0, max_detections=1)[0]
    return found["boxes"][0].astype("float64")


def test_geometry_is_training_letterbox_exactly():
    # 24 rows x 48 columns into 32x32: scale 2/3 -> 16 x 32, 8 rows of gray
    # above and below; training's `letterbox_image` gives the same pixels.
    from kerastransfer.data.detection import letterbox_image

    assert letterbox_geometry((24, 48), (32, 32)) == (2 / 3, 16, 32, 0, 8)
    image = np.random.default_rng(0).integers(0, 256, (24, 48, 3)).astype("uint8")
    batch, sizes = prepare_images([image], (32, 32, 3))
    assert sizes == [(24, 48)]
    assert np.all(batch[0, :8] == LETTERBOX_FILL)
    assert np.all(batch[0, 24:] == LETTERBOX_FILL)
    # Byte pixels (uint8, or floats that are whole numbers, as decoded files
    # are) are resized as training resizes them: the very same pixels.
    trained_view, *geometry = letterbox_image(image, (32, 32))
    assert geometry == [2 / 3, 0.0, 8.0]
    np.testing.assert_array_equal(batch[0], trained_view)
    whole, _ = prepare_images([image.astype("float32")], (32, 32, 3))
    np.testing.assert_array_equal(whole, batch)
    gray, _ = prepare_images([image[..., :1]], (32, 32, 1))
    np.testing.assert_array_equal(gray[0, ..., 0], trained_view[..., 0])
    # Fractional floats are resized per channel as float planes (no uint8
    # rounding): within 1 of training plus their fraction.
    fractional = image.astype("float32") + 0.25
    batch, _ = prepare_images([fractional], (32, 32, 3))
    expected = np.stack([np.asarray(Image.fromarray(fractional[..., c], mode="F")
                                    .resize((32, 16), Image.BILINEAR))
                         for c in range(3)], axis=-1)
    np.testing.assert_array_equal(batch[0, 8:24], expected)
    assert np.max(np.abs(batch[0] - trained_view)) <= 1.25
    # Images at the model's size are passed through untouched.
    same, _ = prepare_images([image[:, :32]], (24, 32, 3))
    np.testing.assert_array_equal(same[0], image[:, :32])
    # Boxes map back by (box - pad) / scale, clipped to the image.
    np.testing.assert_allclose(
        unletterbox_boxes([[-2, 4, 12, 20]], (2 / 3, 0, 8), (24, 48)),
        [[0, 0, 18, 18]], atol=1e-5)
    # The data module re-exports the runtime's functions: one implementation.
    from kerastransfer.data import detection

    assert detection.letterbox_array is letterbox_array
    assert detection.unletterbox_boxes is unletterbox_boxes


def test_twice_the_size_gives_twice_the_box(trained):
    model, predictor = trained
    image = scene(np.random.default_rng(7), 9, 13)  # square [13, 9, 23, 19]
    for detect in (model.predict, predictor.predict):
        small = top_box(detect, image)
        assert np.max(np.abs(small - [13, 9, 23, 19])) <= 2.0, small
        big = top_box(detect, upsample2(image))
        np.testing.assert_allclose(big, 2 * small, atol=1.0)
        np.testing.assert_allclose(big, [26, 18, 46, 38], atol=4.0)
    # Keras and ONNX agree on the resized image too.
    np.testing.assert_allclose(top_box(model.predict, upsample2(image)),
                               top_box(predictor.predict, upsample2(image)),
                               atol=1e-3)


def test_non_square_image_is_padded_not_stretched(trained):
    model, predictor = trained
    # A 32x32 scene whose square sits in rows 8-24, gray above and below:
    # its middle rows upsampled 2x are a 32 x 64 image, which letterboxes
    # (scale 1/2, pad_y 8) back to nearly the scene. Stretching would have
    # doubled its height instead and moved the box.
    full = scene(np.random.default_rng(3), 11, 5)  # square [5, 11, 15, 21]
    full[:8] = full[24:] = LETTERBOX_FILL
    wide = upsample2(full[8:24])
    assert wide.shape == (32, 64, 3)
    assert letterbox_array(wide, (SIZE, SIZE))[1] == (0.5, 0.0, 8.0)
    boxed, _ = prepare_images([wide], model.image_shape)
    for detect in (model.predict, predictor.predict):
        found = top_box(detect, wide)
        # Exactly the letterboxed image's box mapped back and clipped.
        direct = top_box(detect, boxed[0])
        np.testing.assert_allclose(
            found, unletterbox_boxes([direct], (0.5, 0, 8), (32, 64))[0], atol=1e-4)
        expected = (top_box(detect, full) - [0, 8, 0, 8]) * 2
        np.testing.assert_allclose(found, expected, atol=1.0)
        np.testing.assert_allclose(found, [10, 6, 30, 26], atol=4.0)
