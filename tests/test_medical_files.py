"""DICOM, NIfTI, TIFF and 16-bit PNG wherever images are accepted (issue 13):
the training pipelines (folders, CSV lists), the runtime's file decoding and the
CLI's file prediction keep the files' own units and give the model's channels."""

import csv

import numpy as np
import pytest

pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

from PIL import Image  # noqa: E402
from training_helpers import run_without_tensorflow  # noqa: E402

from kerastransfer.data import load_image_folder, load_image_list  # noqa: E402
from kerastransfer.runtime import decode_images, list_image_files  # noqa: E402
from tests.test_medical import write_dicom  # noqa: E402

SIZE = 16


def _pixels(seed, high=4000):
    return np.random.default_rng(seed).integers(0, high, (SIZE, SIZE)).astype("uint16")


def _write_all(folder):
    """One file per format; returns {file name: expected (SIZE, SIZE) values}."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    raw = _pixels(1)
    write_dicom(folder / "ct.dcm", raw, intercept=-1024.0)
    expected["ct.dcm"] = raw - 1024.0
    volume = np.stack([_pixels(2 + k).astype("float32") for k in range(3)], -1)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / "mr.nii.gz"))
    expected["mr.nii.gz"] = volume[:, :, 1]  # the middle slice along axis 2
    png = _pixels(5, 65536)
    Image.fromarray(png).save(folder / "x16.png")
    expected["x16.png"] = png.astype("float32")
    tif = _pixels(6, 65536)
    Image.fromarray(tif).save(folder / "x16.tif")
    expected["x16.tif"] = tif.astype("float32")
    gray8 = _pixels(7, 256).astype("uint8")
    Image.fromarray(gray8).save(folder / "g8.png")
    expected["g8.png"] = gray8.astype("float32")
    return expected


def _by_file(data, split="train"):
    files = data.train_files if split == "train" else data.validation_files
    dataset = data.train if split == "train" else data.validation
    images = np.concatenate([x for x, _ in dataset.as_numpy_iterator()])
    return dict(zip([f.replace("\\", "/").split("/")[-1] for f in files], images,
                    strict=True))


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_pipeline_keeps_units_and_gives_model_channels(tmp_path, channels):
    expected = _write_all(tmp_path / "data" / "a")
    _write_all(tmp_path / "data" / "b")
    data = load_image_folder(tmp_path / "data", image_size=(SIZE, SIZE), batch_size=4,
                             shuffle=False, channels=channels)
    assert data.skipped == [] and data.num_train == 10
    images = _by_file(data)
    for name, values in expected.items():
        assert images[name].shape == (SIZE, SIZE, channels), name
        for c in range(channels):  # gray files repeated for an RGB model
            np.testing.assert_allclose(images[name][..., c], values, atol=1e-3,
                                       rtol=2e-4, err_msg=name)
    assert images["ct.dcm"].min() < 0 and images["x16.png"].max() > 60000


def test_csv_list_with_dicom_resized_and_bad_file_skipped(tmp_path):
    raw = _pixels(3)
    rows = []
    for i in range(4):
        write_dicom(tmp_path / f"s{i}.dcm", raw, slope=2.0, intercept=-100.0)
        rows.append({"path": f"s{i}.dcm", "label": "ab"[i % 2], "patient": f"p{i}"})
    (tmp_path / "broken.dcm").write_bytes(b"not a dicom")
    rows.append({"path": "broken.dcm", "label": "a", "patient": "p9"})
    with open(tmp_path / "list.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["path", "label", "patient"])
        writer.writeheader()
        writer.writerows(rows)
    data = load_image_list(tmp_path / "list.csv", image_size=(8, 8), batch_size=2,
                           channels=1, group_column="patient", shuffle=False,
                           validation_split=0.5)
    assert not set(data.train_files) & set(data.validation_files)
    assert [p.endswith("broken.dcm") for p, _ in data.skipped] == [True]
    image = next(iter(data.train.as_numpy_iterator()))[0][0]
    assert image.shape == (8, 8, 1)
    hu = raw * 2.0 - 100.0  # resized 16 -> 8: values stay in modality units
    assert hu.min() - 1e-3 <= image.min() and image.max() <= hu.max() + 1e-3
    assert image.max() > 255
    np.testing.assert_allclose(image.mean(), hu.mean(), rtol=0.05)


def test_multichannel_model_takes_4d_nifti_and_refuses_the_rest(tmp_path):
    sequences = np.random.default_rng(0).normal(size=(SIZE, SIZE, 3, 5))
    for label in "ab":
        _write_all(tmp_path / "data" / label)
        nib.save(nib.Nifti1Image(sequences.astype("float32"), np.eye(4)),
                 str(tmp_path / "data" / label / "mri5.nii"))
    data = load_image_folder(tmp_path / "data", image_size=(SIZE, SIZE), channels=5)
    reasons = {p.split("/")[-1]: r for p, r in data.skipped}
    assert "8-bit RGB image cannot feed a 5-channel model" in reasons["g8.png"]
    assert "has 1 channel(s) but the model takes 5" in reasons["ct.dcm"]
    assert len(data.skipped) == 10 and data.num_train == 2
    images = next(iter(data.train.as_numpy_iterator()))[0]
    np.testing.assert_allclose(images[0], sequences[:, :, 1], atol=1e-5)


def test_runtime_decodes_medical_files_without_cutting_to_8_bits(tmp_path):
    expected = _write_all(tmp_path)
    files = list_image_files(tmp_path)
    assert sorted(f.split("/")[-1] for f in files) == sorted(expected)
    images, failed = decode_images(files, (SIZE, SIZE), channels=1)
    assert failed == []
    for path, image in zip(files, images, strict=True):
        np.testing.assert_allclose(image[..., 0], expected[path.split("/")[-1]],
                                   rtol=2e-4, atol=1e-3)
    rgb, _ = decode_images([tmp_path / "ct.dcm"], (SIZE, SIZE), channels=3)
    np.testing.assert_array_equal(rgb[0], np.repeat(rgb[0][..., :1], 3, -1))
    half, _ = decode_images([tmp_path / "x16.png"], (8, 8), channels=1)
    assert half.shape == (1, 8, 8, 1) and half.max() > 255


def test_runtime_import_needs_no_medical_packages():
    assert run_without_tensorflow(
        "import sys, kerastransfer.runtime\n"
        "result = sorted(m for m in ('pydicom', 'nibabel') if m in sys.modules)") == []


def test_uploaded_bytes_decode_as_the_files(tmp_path):
    """The edge service's decoder (export/decoding.py) gives uploaded DICOM, TIFF,
    16-bit PNG and 8-bit PNG bytes the values `decode_images` gives the files,
    with the model's channels; a DICOM over the pixel limit is refused from its
    header."""
    import falcon

    from export.decoding import DecodeBudget, decode_upload

    expected = _write_all(tmp_path)
    budget = DecodeBudget(10_000)
    for name in ("ct.dcm", "x16.png", "x16.tif", "g8.png"):
        data = (tmp_path / name).read_bytes()
        for channels in (1, 3):
            want, _ = decode_images([tmp_path / name], (8, 8), channels=channels)
            got = decode_upload(data, (8, 8, channels), 10_000, budget)
            assert got.shape == (8, 8, channels), name
            np.testing.assert_allclose(got, want[0], rtol=1e-6, atol=1e-3)
        full = decode_upload(data, (SIZE, SIZE, 1), 10_000)
        np.testing.assert_allclose(full[..., 0], expected[name], rtol=2e-4, atol=1e-3)
    assert budget.in_use == 0
    with pytest.raises(falcon.HTTPError) as error:
        decode_upload((tmp_path / "ct.dcm").read_bytes(), (8, 8, 1), 100)
    assert error.value.status_code == 413
    assert "256 pixels; the limit is 100" in error.value.description
    with pytest.raises(falcon.HTTPError) as error:
        decode_upload((tmp_path / "g8.png").read_bytes(), (8, 8, 5), 10_000)
    assert error.value.status_code == 400
    assert "the model takes 5" in error.value.description
