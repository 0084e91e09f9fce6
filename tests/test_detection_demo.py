"""The detection demo (`python -m kerastransfer.demo --task detection`): its
canvases, its pretrained pyramid and a tiny end-to-end run."""

import json

import numpy as np
import pytest

from kerastransfer.demo import detection as demo


def test_canvases_are_luminance_with_boxes_inside():
    data = demo.canvases(6, 4, seed=0, canvas=32)
    again = demo.canvases(6, 4, seed=0, canvas=32)
    for part, count in (("train", 6), ("test", 4)):
        images, targets = data[part]
        assert images.shape == (count, 32, 32, 1) and images.dtype == np.float32
        assert 0 <= images.min() and images.max() <= 255
        np.testing.assert_array_equal(images, again[part][0])
        for target in targets:
            boxes = target["boxes"]
            assert len(boxes) >= 1 and np.all(boxes[:, :2] >= 0)
            assert np.all(boxes[:, 2:] <= 32) and np.all(boxes[:, 2:] > boxes[:, :2])
            assert np.all((0 <= target["labels"]) & (target["labels"] <= 9))
    # Another seed draws other training canvases; the held-out ones are fixed.
    other = demo.canvases(6, 4, seed=1, canvas=32)
    assert not np.array_equal(other["train"][0], data["train"][0])
    np.testing.assert_array_equal(other["test"][0], data["test"][0])


def test_encoder_is_the_pretrained_digits_cnn_at_strides_2_4_8():
    from kerastransfer.demo.pretrain import digits_cnn

    pretrained, scratch = demo.encoder(True, 32), demo.encoder(False, 32)
    assert [tuple(o.shape[1:]) for o in pretrained.outputs] == [
        (16, 16, 64), (8, 8, 128), (4, 4, 128)]
    shipped = digits_cnn((32, 32, 1), weights="mnist")
    for name in ("block1_conv", "block2_conv", "block3_conv", "block3_bn"):
        for a, b in zip(pretrained.get_layer(name).get_weights(),
                        shipped.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(scratch.get_layer("block1_conv").get_weights()[0],
                           shipped.get_layer("block1_conv").get_weights()[0])


@pytest.mark.slow  # two detectors trained (tiny settings)
def test_demo_runs_end_to_end_and_writes_its_summary(tmp_path, capsys):
    import kerastransfer.demo.__main__ as demo_main

    out = tmp_path / "summary.json"
    table = demo_main.main(["--task", "detection", "--sizes", "4", "--seeds", "0",
                            "--steps", "1", "--test", "4", "--canvas", "32",
                            "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(table))
    assert [(r["arm"], r["size"], r["seed"]) for r in table["runs"]] == [
        ("pretrained", 4, 0), ("scratch", 4, 0)]
    for run in table["runs"]:
        assert 0.0 <= run["map"] <= run["map50"] <= 1.0 and run["epochs"] == 2
    assert table["pretrained"]["4"]["map50"] == table["runs"][0]["map50"]
    printed = capsys.readouterr().out
    assert "pretrained mAP@.5" in printed and "scratch mAP@[.5:.95]" in printed
