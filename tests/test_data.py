"""Data pipelines: image folders, lists, arrays, corrupt files, splits, weights."""

import csv
import logging
import os

import numpy as np
import pytest
from PIL import Image
from test_features import tiny_backbone

import kerastransfer as kt
from kerastransfer import data as kd
from kerastransfer.errors import DataError


def write_image(path, colour, size=(20, 16), fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(abs(hash(path)) % 2**32)
    pixels = np.clip(np.array(colour) + rng.normal(0, 10, size[::-1] + (3,)), 0, 255)
    Image.fromarray(pixels.astype("uint8")).save(path, format=fmt)


def make_folder(root, per_class=(6, 4, 5)):
    colours = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}
    for (name, colour), count in zip(colours.items(), per_class, strict=False):
        for i in range(count):
            ext = ".png" if i % 2 else ".jpg"
            write_image(os.path.join(root, name, f"{i}{ext}"), colour)
    return root


def add_bad_files(root):
    bad = {
        os.path.join(root, "cat", "garbage.jpg"): b"\x00\x01 not an image at all",
        os.path.join(root, "dog", "notes.txt"): b"hello",
    }
    for path, content in bad.items():
        with open(path, "wb") as f:
            f.write(content)
    good = os.path.join(root, "emu", "0.jpg")
    truncated = os.path.join(root, "emu", "truncated.jpg")
    with open(good, "rb") as f:
        content = f.read()
    with open(truncated, "wb") as f:
        f.write(content[: len(content) // 2])
    return sorted([*bad, truncated])


def all_batches(dataset):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=False)
    return np.concatenate(xs), np.concatenate(ys)


def test_load_image_folder_reads_images_and_classes(tmp_path):
    root = make_folder(str(tmp_path / "imgs"))
    data = kd.load_image_folder(root, image_size=(24, 32), batch_size=4)
    assert data.class_names == ["cat", "dog", "emu"]
    assert data.num_train == 15 and data.num_validation == 0
    assert data.validation is None
    assert data.class_counts == {"cat": 6, "dog": 4, "emu": 5}
    x, y = all_batches(data.train)
    assert x.shape == (15, 24, 32, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 255.0
    assert np.bincount(y).tolist() == [6, 4, 5]
    # the image colour matches its class: red cats, green dogs, blue emus
    assert (x.mean(axis=(1, 2)).argmax(axis=1) == y).all()


def test_corrupt_files_are_skipped_and_reported(tmp_path, caplog):
    root = make_folder(str(tmp_path / "imgs"))
    bad = add_bad_files(root)
    with caplog.at_level(logging.WARNING, logger="kerastransfer"):
        data = kd.load_image_folder(root, image_size=(16, 16))
    assert sorted(p for p, _ in data.skipped) == bad
    assert all(reason for _, reason in data.skipped)
    assert data.num_train == 15
    warning = " ".join(r.getMessage() for r in caplog.records
                       if r.levelno == logging.WARNING)
    assert "Skipping 3 of 18 files" in warning
    for path in bad:
        assert path in warning
    x, _ = all_batches(data.train)  # the pipeline runs: no bad file inside
    assert len(x) == 15


def test_strict_rejects_corrupt_files_before_training(tmp_path):
    root = make_folder(str(tmp_path / "imgs"))
    add_bad_files(root)
    expected = r"(?s)3 of 18 files are not usable.*garbage\.jpg"
    with pytest.raises(DataError, match=expected):
        kd.load_image_folder(root, strict=True)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        kd.load_image_folder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        kd.load_image_folder(str(tmp_path / "empty"))
    write_image(str(tmp_path / "one" / "a" / "1.png"), (1, 2, 3))
    with pytest.raises(DataError, match="single class"):
        kd.load_image_folder(str(tmp_path / "one"))
    (tmp_path / "none" / "a").mkdir(parents=True)
    (tmp_path / "none" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match="hold no files"):
        kd.load_image_folder(str(tmp_path / "none"))
    (tmp_path / "none" / "a" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match="no usable image"):
        kd.load_image_folder(str(tmp_path / "none"))


def test_split_is_seeded_stratified_and_deterministic(tmp_path):
    root = make_folder(str(tmp_path / "imgs"), per_class=(10, 10, 10))
    first = kd.load_image_folder(root, image_size=(8, 8), validation_split=0.2, seed=3)
    again = kd.load_image_folder(root, image_size=(8, 8), validation_split=0.2, seed=3)
    other = kd.load_image_folder(root, image_size=(8, 8), validation_split=0.2, seed=4)
    assert (first.num_train, first.num_validation) == (24, 6)
    v1, l1 = all_batches(first.validation)
    v2, l2 = all_batches(again.validation)
    v3, _ = all_batches(other.validation)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(l1, l2)
    assert np.bincount(l1).tolist() == [2, 2, 2]  # stratified
    assert not np.array_equal(v1, v3)
    # train and validation do not overlap
    t1, _ = all_batches(first.train)
    flat_t = {row.tobytes() for row in t1}
    assert not any(row.tobytes() in flat_t for row in v1)
    # the training order changes between epochs (reshuffled after the cache)
    e1, _ = all_batches(first.train)
    assert not np.array_equal(t1, e1)


def test_balanced_class_weight_numbers():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = kd.balanced_class_weight(labels, 3)
    assert weights == pytest.approx({0: 10 / 18, 1: 10 / 9, 2: 10 / 3})
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert [weights[i] for i in range(3)] == pytest.approx(expected.tolist())
    one_hot = np.eye(3)[labels]
    assert kd.balanced_class_weight(one_hot, 3) == pytest.approx(weights)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.zeros((10, 2)), labels)).batch(4)
    assert kd.balanced_class_weight(ds, 3) == pytest.approx(weights)
    assert kd.balanced_class_weight([0, 0, 1], 3)[2] == 1.0  # absent class
    with pytest.raises(DataError, match="Labels must be in"):
        kd.balanced_class_weight([0, 3], 3)


def test_fit_accepts_image_data_and_balanced_weights(tmp_path):
    root = make_folder(str(tmp_path / "imgs"))
    data = kd.load_image_folder(root, image_size=(32, 32), batch_size=4,
                                validation_split=0.3)
    model = kt.TransferModel(tiny_backbone(), input_shape=(32, 32, 3),
                             class_names=data.class_names)
    history = model.fit(data, epochs=1, class_weight="balanced", verbose=0)
    assert "val_loss" in history.history  # the ImageData's validation split
    assert data.class_weight() == pytest.approx(
        kd.balanced_class_weight(data.train_labels, 3))
    bad = kt.TransferModel(tiny_backbone(), num_classes=2, input_shape=(32, 32, 3))
    with pytest.raises(DataError, match="3 classes"):
        bad.fit(data, epochs=1, verbose=0)


def test_load_image_list_csv_and_records(tmp_path):
    root = make_folder(str(tmp_path / "imgs"), per_class=(3, 3, 2))
    rows = [{"file": os.path.join(name, f), "kind": name}
            for name in ("cat", "dog", "emu")
            for f in sorted(os.listdir(os.path.join(root, name)))]
    rows.append({"file": "dog/missing.png", "kind": "dog"})
    csv_path = os.path.join(root, "labels.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "kind"])
        writer.writeheader()
        writer.writerows(rows)
    data = kd.load_image_list(csv_path, path_column="file", label_column="kind",
                              image_size=(8, 8), shuffle=False)
    assert data.class_names == ["cat", "dog", "emu"]
    assert data.num_train == 8
    assert [os.path.basename(p) for p, _ in data.skipped] == ["missing.png"]
    _, y = all_batches(data.train)
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    records = kd.load_image_list(rows[:-1], path_column="file", label_column="kind",
                                 root=root, image_size=(8, 8), shuffle=False)
    np.testing.assert_array_equal(all_batches(records.train)[0],
                                  all_batches(data.train)[0])
    with pytest.raises(DataError, match="no 'path' column"):
        kd.load_image_list(rows, root=root)


def test_from_arrays_split():
    x = np.random.default_rng(0).uniform(0, 255, (20, 8, 8, 3)).astype("float32")
    y = np.array([0, 1] * 10)
    data = kd.from_arrays(x, y, validation_split=0.5, seed=1, batch_size=3)
    assert (data.num_train, data.num_validation) == (10, 10)
    assert data.class_counts == {"0": 5, "1": 5}
    xv, yv = all_batches(data.validation)
    xt, _ = all_batches(data.train)
    assert sorted(map(bytes, np.concatenate([xt, xv]))) == sorted(map(bytes, x))


def test_augmentation_presets_train_only(tmp_path):
    import tensorflow as tf

    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.array([0, 1] * 4)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    for preset in ("light", "medium", "heavy"):
        layers = kd.augmentation_layers(preset, seed=1)
        assert all(type(layer).__name__.startswith("Random") for layer in layers.layers)
        out, labels = next(iter(kd.augment_dataset(ds, preset, seed=1)))
        assert out.shape == x.shape
        assert labels.numpy().tolist() == y.tolist()
        assert not np.allclose(out.numpy(), x)
    with pytest.raises(ValueError, match="Unknown augmentation preset"):
        kd.augmentation_layers("extreme")
    model = kt.TransferModel(tiny_backbone(), num_classes=2, input_shape=(32, 32, 3))
    history = model.fit(x, y, epochs=1, batch_size=4, augmentation="medium",
                        validation_split=0.25, verbose=0)
    assert "val_loss" in history.history
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = kt.load_model(path)
    names = [type(layer).__name__ for layer in loaded._flatten_layers()]
    assert not any(name.startswith("Random") for name in names)
