"""The runtime tokenizer (`tokenizers` file) gives exactly KerasHub's token ids;
text CSV loading reports bad rows; the runtime imports without TensorFlow."""


import numpy as np
import pytest

pytest.importorskip("keras_hub")
pytest.importorskip("tokenizers")

from training_helpers import run_without_tensorflow  # noqa: E402

from kerastransfer.data.text import load_text_csv, text_data_from_lists  # noqa: E402
from kerastransfer.errors import DataError  # noqa: E402
from tests.text_helpers import CORPUS, VOCAB, make_preprocessor  # noqa: E402


@pytest.mark.parametrize("lowercase, strip_accents", [
    (True, False), (False, False), (True, True), (False, True)])
@pytest.mark.parametrize("sequence_length", [8, 24])
def test_runtime_tokenizer_equals_kerashub(lowercase, strip_accents, sequence_length):
    from tokenizers import Tokenizer

    from kerastransfer.backbones.kerashub import tokenize
    from kerastransfer.runtime.text import wordpiece_tokenizer_json

    preprocessor = make_preprocessor(sequence_length, lowercase, strip_accents)
    expected = tokenize(preprocessor, CORPUS)
    tokenizer = Tokenizer.from_str(wordpiece_tokenizer_json(
        VOCAB, sequence_length=sequence_length, lowercase=lowercase,
        strip_accents=strip_accents))
    encodings = tokenizer.encode_batch(CORPUS)
    got = np.stack([np.array([e.ids for e in encodings]),
                    np.array([e.type_ids for e in encodings]),
                    np.array([e.attention_mask for e in encodings])], axis=1)
    for i, text in enumerate(CORPUS):
        np.testing.assert_array_equal(got[i], expected[i], err_msg=repr(text))
    # the corpus does exercise unknown words, sub-words and truncation
    ids = expected[:, 0]
    assert (ids == VOCAB.index("[UNK]")).any()
    assert np.isin(ids, [VOCAB.index(p) for p in VOCAB if p.startswith("##")]).any()
    assert expected[:, 2].all(axis=1).any()  # some text fills the whole length


def test_runtime_imports_without_tensorflow():
    run_without_tensorflow("import kerastransfer.runtime as r; r.TextPredictor")


def test_load_text_csv_reports_bad_rows(tmp_path, caplog):
    path = tmp_path / "data.csv"
    rows = ["body,topic,source"] + [f"text number {i},{'ab'[i % 2]},s{i // 4}"
                                    for i in range(40)]
    rows += ['"   ",a,s0', ",b,s1", "orphan text,,s2"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = load_text_csv(path, text_column="body", label_column="topic",
                         validation_split=0.25, group_column="source", seed=3)
    assert data.class_names == ["a", "b"]
    assert [why for _, why in data.skipped] == ["empty text", "empty text", "no label"]
    assert "Skipped 3 of 43 rows" in caplog.text
    train_texts, _ = data.train
    val_texts, val_y = data.validation
    assert len(train_texts) + len(val_texts) == 40
    group = {f"text number {i}": f"s{i // 4}" for i in range(40)}
    assert not {group[t] for t in train_texts} & {group[t] for t in val_texts}
    assert set(val_y.tolist()) <= {0, 1}
    with pytest.raises(DataError, match="no column 'text'"):
        load_text_csv(path)


def test_multilabel_lists_and_non_text_rows():
    data = text_data_from_lists(["x y", 5, "z", "w"],
                                [["a", "b"], ["a"], "b|c", []], multilabel=True)
    assert data.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(data.train[1], [[1, 1, 0], [0, 1, 1], [0, 0, 0]])
    assert data.skipped == [(1, "not text (int)")]
