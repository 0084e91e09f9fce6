"""Data pipelines: image folders, lists, arrays, corrupt files, splits, weights."""

import csv
import logging
import os

import numpy as np
import pytest
from PIL import Image
from test_features import tiny_backbone
from training_helpers import run_without_tensorflow

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


# --- images_only: any training source -> image batches ---------------------


def synthetic_image_data(tmp_path, **kwargs):
    from kerastransfer.data.synthetic import write_image_folder

    root = write_image_folder(str(tmp_path / "synthetic"), per_class=5, size=16)
    return kd.load_image_folder(root, image_size=(16, 16), shuffle=False, **kwargs)


def test_images_only_image_data_from_a_folder(tmp_path):
    data = synthetic_image_data(tmp_path, batch_size=3, validation_split=0.2)
    assert (data.num_train, data.num_validation) == (8, 2)
    batches = list(kd.images_only(data))
    assert [b.shape for b in batches] == [(3, 16, 16, 3), (3, 16, 16, 3),
                                          (2, 16, 16, 3)]
    assert all(isinstance(b, np.ndarray) and b.dtype == np.float32 for b in batches)
    x, y = all_batches(data.train)  # exactly the training images, labels dropped
    np.testing.assert_array_equal(np.concatenate(batches), x)
    # the colour of each image still names its class (green: channel 0 = 210)
    assert (np.concatenate(batches).mean(axis=(1, 2)).argmax(axis=1) == y * 1).all()
    cut = list(kd.images_only(data, max_samples=4))
    assert [len(b) for b in cut] == [3, 1]
    np.testing.assert_array_equal(np.concatenate(cut), x[:4])


def test_images_only_arrays_tuples_and_datasets():
    import tensorflow as tf

    x = np.arange(10 * 4 * 4 * 3, dtype="float32").reshape(10, 4, 4, 3)
    y = np.arange(10) % 2

    def sizes(source, **kwargs):
        return [len(b) for b in kd.images_only(source, **kwargs)]

    assert sizes(x, batch_size=4) == [4, 4, 2]
    assert sizes((x, y), batch_size=4) == [4, 4, 2]  # as Keras's validation_data
    assert sizes((x, y, np.ones(10)), batch_size=5) == [5, 5]
    batched = tf.data.Dataset.from_tensor_slices((x, y, np.ones(10))).batch(6)
    np.testing.assert_array_equal(np.concatenate(list(kd.images_only(batched))), x)
    single = tf.data.Dataset.from_tensor_slices(x)  # unbatched images get batched
    assert sizes(single, batch_size=4) == [4, 4, 2]
    forever = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    assert sizes(forever, max_samples=9) == [4, 4, 1]
    assert sizes([(x[:3], y[:3]), (x[3:], y[3:])]) == [3, 7]
    with pytest.raises(ValueError, match="max_samples must be a positive int"):
        kd.images_only(x, max_samples=0)  # at the call, not at the first batch
    with pytest.raises(TypeError, match="Received: data of type str"):
        kd.images_only("photos/")


# --- checks shared by data and training -------------------------------------


def test_from_arrays_rejects_bad_labels_and_images():
    x = np.random.default_rng(0).uniform(0, 255, (6, 8, 8, 3)).astype("float32")
    with pytest.raises(DataError, match=r"Labels must be in \[0, 1\].*\[0, 5\]"):
        kd.from_arrays(x, [0, 1, 5, 0, 1, 0], class_names=["a", "b"])
    with pytest.raises(DataError, match=r"Labels must be in .*\[-1, 1\]"):
        kd.from_arrays(x, [0, 1, -1, 0, 1, 0])
    with pytest.raises(DataError, match="class_names has 3 names but the label rows "
                                        "have 2 columns"):
        kd.from_arrays(x, np.eye(2)[[0, 1, 0, 1, 0, 1]], class_names=["a", "b", "c"])
    with pytest.raises(DataError, match="one label per example. Received: 6 inputs "
                                        "and 2 labels"):
        kd.from_arrays(x, [0, 1])
    bad = x.copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or Inf values.*Received: 1 non-finite"):
        kd.from_arrays(bad, [0, 1] * 3)
    with pytest.raises(DataError, match="real numbers.*Received: x.dtype=<U1"):
        kd.from_arrays(np.full((2, 8, 8, 3), "x"), [0, 1])
    with pytest.raises(DataError, match="The training data is empty"):
        kd.from_arrays(np.zeros((0, 8, 8, 3)), np.zeros(0))


def test_check_inputs_shapes_and_passthrough():
    from kerastransfer.data.checks import check_inputs

    x = np.zeros((4, 8, 6, 3), "float32")
    check_inputs(x, np.zeros(4), shape=(8, 6, 3))
    check_inputs(x, shape=(None, None, 3))  # None matches any size
    check_inputs([[1, 2]], shape=(5,))  # not a numpy array: left to Keras
    expected = r"shape \(batch, 8, 8, 3\).*input_shape=\(8, 6, 3\). Received: x.shape="
    with pytest.raises(DataError, match=expected + r"\(4, 8, 6, 3\)"):
        check_inputs(x, shape=(8, 8, 3))
    with pytest.raises(DataError, match="Received: x.shape=\\(4, 8, 6, 3\\)"):
        check_inputs(x, shape=(8, 6))  # wrong rank


def test_loaders_check_arguments_before_reading_files(tmp_path, monkeypatch):
    from kerastransfer.data import checks

    root = make_folder(str(tmp_path / "imgs"))
    opened = []
    real = checks.check_image_file
    monkeypatch.setattr(checks, "check_image_file",
                        lambda path, size=None: opened.append(path) or real(path, size))
    rows = [{"path": os.path.join(root, "cat", "0.jpg"), "label": "cat"}]
    for bad in ({"validation_split": 1.0}, {"validation_split": "0.2"},
                {"batch_size": 0}, {"batch_size": True}, {"image_size": (8, 0)}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            kd.load_image_folder(root, **bad)
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            kd.load_image_list(rows, **bad)
    assert opened == []  # no file was decoded for a call that cannot succeed
    kd.load_image_folder(root, image_size=(8, 8))
    assert len(opened) == 15


# --- one list of image extensions -------------------------------------------


def test_one_image_extension_list_matches_the_decoders(tmp_path):
    from kerastransfer import runtime
    from kerastransfer.runtime import files

    assert kd.IMAGE_EXTENSIONS is files.IMAGE_EXTENSIONS
    assert getattr(runtime, "IMAGE_EXTENSIONS", files.IMAGE_EXTENSIONS) == \
        files.IMAGE_EXTENSIONS
    assert set(kd.TF_IMAGE_EXTENSIONS) < set(kd.IMAGE_EXTENSIONS)
    # every extension of the TF subset loads through the tf.data pipeline, TIFF
    # through read_image (issue 13); WebP is skipped with a reason
    for i, ext in enumerate(kd.IMAGE_EXTENSIONS):
        write_image(str(tmp_path / "a" / f"{i}{ext}"), (200, 30, 30))
        write_image(str(tmp_path / "b" / f"{i}{ext}"), (30, 30, 200))
    data = kd.load_image_folder(str(tmp_path), image_size=(8, 8), shuffle=False)
    loaded = {os.path.splitext(p)[1] for p in os.listdir(tmp_path / "a")} - {
        os.path.splitext(p)[1] for p, _ in data.skipped}
    assert loaded == set(kd.TF_IMAGE_EXTENSIONS) | {".tif", ".tiff"}
    assert data.num_train == 2 * (len(kd.TF_IMAGE_EXTENSIONS) + 2)
    assert all("unsupported format" in reason for _, reason in data.skipped)
    x, y = all_batches(data.train)
    assert (x.mean(axis=(1, 2)).argmax(axis=1) == 2 * y).all()  # red a, blue b


def test_import_data_does_not_import_tensorflow():
    run_without_tensorflow("import kerastransfer.data, kerastransfer.data.inputs")
