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
    # color=True gives the RGB canvases whose luminance the default returns,
    # with the same boxes; digits and digit_size reach the generator.
    rgb = demo.canvases(6, 4, seed=0, canvas=32, color=True)
    assert rgb["train"][0].shape == (6, 32, 32, 3)
    np.testing.assert_allclose(demo._luminance(rgb["train"][0].astype("uint8")),
                               data["train"][0])
    np.testing.assert_array_equal(rgb["test"][1][0]["boxes"],
                                  data["test"][1][0]["boxes"])
    sized = demo.canvases(6, 4, seed=0, canvas=32, digits=(2, 2),
                          digit_size=(16, 24))
    for target in sized["train"][1] + sized["test"][1]:
        sides = np.maximum(target["boxes"][:, 2] - target["boxes"][:, 0],
                           target["boxes"][:, 3] - target["boxes"][:, 1])
        assert len(sides) <= 2 and np.all((sides >= 12) & (sides <= 24))


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
    # RGB: the pretrained first convolution is spread over the channels (a gray
    # image repeated 3 times gives the 1-channel network's levels), and
    # strides picks levels.
    rgb = demo.encoder(True, 32, channels=3, strides=(4, 8))
    assert [tuple(o.shape[1:]) for o in rgb.outputs] == [(8, 8, 128), (4, 4, 128)]
    gray = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 1)).astype("float32")
    want = pretrained(gray)[1:]
    got = rgb(np.repeat(gray, 3, axis=-1))
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4,
                                   atol=1e-4)
    with pytest.raises(ValueError, match="strides"):
        demo.encoder(False, 32, strides=(4, 16))


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
