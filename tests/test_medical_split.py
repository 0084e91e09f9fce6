"""Patient-safe (grouped) splits and the folder-leak warning (issue 13)."""

import logging

import numpy as np
import pytest
from PIL import Image

from kerastransfer.data import load_image_folder, load_image_list
from kerastransfer.data.groups import folder_leaks, group_split_indices


def test_group_split_keeps_patients_on_one_side_and_stratifies():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 5)  # 40 patients, 5 images each
    labels = np.repeat(rng.permutation(np.arange(40) % 2), 5)  # label per patient
    train, val = group_split_indices(labels, groups, 0.25, seed=3)
    assert set(groups[train]).isdisjoint(groups[val])
    assert len(train) + len(val) == 200 and len(set(train) | set(val)) == 200
    assert 0.15 <= len(val) / 200 <= 0.35
    # stratified as far as groups allow: each side has both classes, share ~ 1/2
    assert abs(labels[val].mean() - 0.5) <= 0.15
    again = group_split_indices(labels, groups, 0.25, seed=3)
    np.testing.assert_array_equal(again[1], val)  # seeded


def test_group_split_errors():
    with pytest.raises(ValueError, match="one entry per image.*len\\(groups\\)=3"):
        group_split_indices([0, 1, 0, 1], ["a", "b", "c"], 0.5, seed=0)
    with pytest.raises(ValueError, match="at least two groups"):
        group_split_indices([0, 1, 0, 1], ["a"] * 4, 0.5, seed=0)


def _write(folder, name, value):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(folder / name)


def test_load_image_list_groups_and_audit(tmp_path):
    rows = []
    for patient in range(12):
        for k in range(3):
            name = f"p{patient}_{k}.png"
            _write(tmp_path, name, 20 * patient)
            rows.append({"path": name, "label": "sick" if patient % 2 else "well",
                         "patient": f"P{patient}"})
    csv = tmp_path / "list.csv"
    csv.write_text("path,label,patient\n" + "".join(
        f"{r['path']},{r['label']},{r['patient']}\n" for r in rows))
    data = load_image_list(str(csv), group_column="patient", image_size=(8, 8),
                           validation_split=0.25, seed=1, batch_size=4)
    patient = {r["path"]: r["patient"] for r in rows}
    train = {patient[f.split("/")[-1]] for f in data.train_files}
    val = {patient[f.split("/")[-1]] for f in data.validation_files}
    assert train and val and train.isdisjoint(val)
    assert len(data.train_files) == data.num_train
    assert data.num_validation == 3 * len(val)
    by_list = load_image_list(rows, root=str(tmp_path), image_size=(8, 8),
                              validation_split=0.25, seed=1,
                              groups=[r["patient"] for r in rows])
    assert sorted(by_list.validation_files) == sorted(data.validation_files)
    with pytest.raises(ValueError, match="one entry per listed image"):
        load_image_list(rows, root=str(tmp_path), image_size=(8, 8),
                        validation_split=0.25, groups=["P0"])
    with pytest.raises(ValueError, match="no column 'site'"):
        load_image_list(str(csv), group_column="site", image_size=(8, 8),
                        validation_split=0.25)


def test_folder_split_leak_warning(tmp_path, caplog):
    for patient in range(6):
        for k in range(4):
            _write(tmp_path / ("a" if patient % 2 else "b"),
                   f"patient{patient}_{k}.png", k)
    with caplog.at_level(logging.WARNING, logger="kerastransfer"):
        data = load_image_folder(str(tmp_path), image_size=(8, 8),
                                 validation_split=0.25, seed=0)
    leaks = folder_leaks(data.train_files, data.validation_files)
    assert leaks and all(leak.startswith("patient") for leak in leaks)
    assert "may leak" in caplog.text
    assert folder_leaks(["x/P1_a.png"], ["x/P2_a.png"]) == []
