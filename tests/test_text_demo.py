"""The offline text-transfer demo's corpus builder (standard-library docstrings
-> package family; docstrings and comments for pretraining) and its TF-IDF
baseline and table, on a small hand-made library folder (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from kerastransfer.demo import text_corpus
from kerastransfer.demo.text_corpus import build_corpus


def _write_library(root, per_family=12):
    for family, tops in text_corpus.FAMILIES.items():
        package = root / tops[0]
        package.mkdir()
        lines = []
        for i in range(per_family):
            lines.append(f"def f{i}():\n    \"\"\"The {family} helper number {i} "
                         f"does {family} work well.\"\"\"\n")
        (package / "__init__.py").write_text("\n".join(lines))
    (root / "other.py").write_text(
        "# a comment run that is long enough to keep\n# and its second line\n"
        "x = 1  # short\n"
        "def g():\n    \"\"\"Another module's docstring with many words.\"\"\"\n")
    tests = root / "test"
    tests.mkdir()
    (tests / "test_x.py").write_text('"""Tests are left out of every corpus."""\n')


def test_corpus_split_labels_and_no_test_text_in_pretraining(tmp_path):
    _write_library(tmp_path)
    corpus = build_corpus(test_per_class=3, chunk_words=100, seed=0,
                          root=str(tmp_path))
    assert corpus.class_names == list(text_corpus.FAMILIES)
    test_x, test_y = corpus.test
    pool_x, pool_y = corpus.pool
    assert np.bincount(test_y).tolist() == [3] * 8
    assert np.bincount(pool_y).tolist() == [9] * 8
    for text, label in zip(test_x + pool_x, list(test_y) + list(pool_y), strict=True):
        assert corpus.class_names[label] in text  # each docstring names its family
    # whole texts (chunks of 100 words): the pool is in the unlabelled corpus,
    # no held-out docstring is; comments and other modules are; tests are not
    assert set(pool_x) <= set(corpus.pretraining)
    assert set(test_x).isdisjoint(corpus.pretraining)
    assert "a comment run that is long enough to keep and its second line" \
        in corpus.pretraining
    joined = " ".join(corpus.pretraining)
    assert "Another module's" in joined and "Tests are left out" not in joined
    chunked = build_corpus(test_per_class=3, chunk_words=4, seed=0, root=str(tmp_path))
    assert chunked.test[0] == test_x  # deterministic for a seed
    assert max(len(chunk.split()) for chunk in chunked.pretraining) == 4


def test_corpus_too_small_is_one_clear_error(tmp_path):
    _write_library(tmp_path, per_family=5)
    with pytest.raises(ValueError, match="too few 'asyncio' docstrings"):
        build_corpus(test_per_class=3, root=str(tmp_path))


def test_tfidf_baseline_and_table():
    from kerastransfer.demo.text import _tfidf, table

    x = ["asyncio loop task", "email header mime", "asyncio await future",
         "email message parser"]
    y = np.array([0, 1, 0, 1])
    accuracy = _tfidf(x, y, ["the asyncio task loop", "a mime email message"],
                      np.array([0, 1]))
    assert accuracy == 1.0
    results = {"a": {"4": [0.5, 0.7]}, "b": {"4": [0.25, 0.25]}}
    assert table(results, [4], ["a", "b"]).splitlines()[-1] == \
        "| 4 | 0.600 ± 0.100 | 0.250 ± 0.000 |"


def test_mlm_packing_and_masking_follow_berts_rule():
    from kerastransfer.demo.text_pretrain import MASK_SLOTS, mask_tokens, pack_ids

    packed = pack_ids([[10, 11, 12], list(range(5, 60))], 32)
    assert packed[0, :6].tolist() == [2, 10, 11, 12, 3, 0]  # [CLS] ... [SEP] [PAD]
    assert packed[1, 0] == 2 and packed[1, 31] == 3  # truncated to 30 word pieces
    rng = np.random.default_rng(0)
    tokens = pack_ids([list(rng.integers(5, 500, 30)) for _ in range(2000)], 32)
    inputs, labels, weights = mask_tokens(tokens, np.random.default_rng(1), 500)
    positions = inputs["mask_positions"]
    assert weights.sum(1).tolist() == [4.0] * 2000  # round(0.15 * 30) = round(4.5)
    assert labels.shape == (2000, MASK_SLOTS)
    rows = np.arange(2000)[:, None]
    chosen = weights > 0
    np.testing.assert_array_equal(labels[chosen], tokens[rows, positions][chosen])
    assert (positions[chosen] >= 1).all() and (positions[chosen] <= 30).all()
    corrupted = inputs["token_ids"][rows, positions][chosen]
    original = labels[chosen]
    masked = float(np.mean(corrupted == 4))
    kept = float(np.mean(corrupted == original))
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.02  # 80/10/10
    unchanged = np.ones(tokens.shape, bool)
    unchanged[rows, positions] = ~chosen
    np.testing.assert_array_equal(inputs["token_ids"][unchanged], tokens[unchanged])
    np.testing.assert_array_equal(inputs["padding_mask"], tokens > 0)
