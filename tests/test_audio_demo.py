"""The audio demo's shipped data and pretrained backbone (offline, no espeak-ng)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("soundfile")

from kerastransfer.demo import audio as demo  # noqa: E402


def test_shipped_clips_decode_and_are_small():
    assert os.path.getsize(demo.DATA_FILE) < 3_000_000
    x, y, voices = demo.load_clips("target")
    assert x.shape == (400, 12800) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [40] * 10
    assert len({v.split("+")[0] for v in voices}) == 10
    assert 0.3 < float(np.max(np.abs(x))) <= 1.0
    xs, ys, _ = demo.load_clips("source")
    assert len(xs) == 640 and np.bincount(ys).tolist() == [32] * 20


def test_pretrained_backbone_transfers_to_new_voices():
    # a linear probe on the pretrained features, 3 clips per class, beats chance
    # (0.1) by far (measured 0.76-0.85 with 1 clip per class, 3 seeds)
    x, y, _ = demo.load_clips("target")
    pretrained = demo.run_one("linear_probe", x, y, k=3, seed=0)
    assert pretrained > 0.4, pretrained
