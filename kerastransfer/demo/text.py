"""`python -m kerastransfer.demo.text`: does transfer work for text, offline?

1. Corpus (`kerastransfer/demo/text_corpus.py`): Python's standard library.
   Unlabelled: its docstrings and comments (the test docstrings left out).
   Labelled: docstring -> package family (8 classes), a fixed held-out test
   set of 60 docstrings per family.
2. Pretraining (`kerastransfer/demo/text_pretrain.py`): a WordPiece
   vocabulary learned on the unlabelled corpus
   (`keras_hub.tokenizers.compute_word_piece_vocabulary`), then a tiny BERT
   (2 layers, 64 wide, 32 tokens) trained by masked-language modelling
   (`keras_hub.models.BertMaskedLM` on texts tokenized once, shuffled and
   masked afresh every step) for `--pretrain-steps`. Its masked-token accuracy
   is measured on held-out chunks of the corpus next to the unigram baseline
   (the first version of this demo never left that baseline: see
   docs/text.md). Deterministic for a seed; the weights and vocabulary are
   cached in the output folder (about 1 MB), not shipped.
3. Fine-tuning with k labelled docstrings per family (3 budgets, several
   seeds), three arms scored on the same test set:
   * `pretrained`: `TextClassifier` on the MLM encoder, every layer trained;
   * `scratch`: the same `TextClassifier` and vocabulary, encoder newly
     initialized, trained the same way (same steps, rate, batches);
   * `tfidf_logreg`: TF-IDF (word 1-2 grams) + logistic regression
     (scikit-learn).

Writes `summary.json` and `table.md` to `--out`. The table is what it is.
Measured (seeds 0, 1, 2; docs/text.md has the checks behind it): the MLM's
held-out masked-token accuracy was 0.123 after 800 steps and 0.277 after
4,000 (the default), against 0.045 for the unigram baseline; held-out
accuracy on the 480 test docstrings (mean ± std over seeds):

| labels/class | pretrained, 800 steps | pretrained, 4,000 | scratch | tfidf_logreg |
|---:|---:|---:|---:|---:|
| 4 | 0.222 ± 0.022 | 0.243 ± 0.010 | 0.300 ± 0.030 | 0.390 ± 0.031 |
| 16 | 0.397 ± 0.033 | 0.424 ± 0.002 | 0.525 ± 0.026 | 0.624 ± 0.017 |
| 64 | 0.562 ± 0.026 | 0.735 ± 0.021 | 0.667 ± 0.017 | 0.810 ± 0.006 |

The 4,000-step encoder transfers at 64 labels per family but not at 4 or 16
(a random encoder sent through the same `pretrained` path scores exactly as
`scratch`, so the path is not the cause), and TF-IDF beats both neural arms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["pretrain_encoder", "run_arms", "main", "ENCODER"]

logger = logging.getLogger("kerastransfer.demo")

ENCODER = {"num_layers": 2, "num_heads": 2, "hidden_dim": 64,
           "intermediate_dim": 128, "max_sequence_length": 32, "dropout": 0.1}
SEQUENCE_LENGTH = 32  # tokens per text, pretraining and fine-tuning alike
STEPS = 160  # fine-tuning steps per arm, whatever the budget
RESERVED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _tokenizer(vocabulary):
    import keras_hub

    return keras_hub.models.BertTokenizer(vocabulary=list(vocabulary), lowercase=True)


def _encoder(vocabulary_size: int, seed: int):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(vocabulary_size=vocabulary_size, **ENCODER)


def pretrain_encoder(texts: list[str], out_dir: str, *, vocabulary_size: int = 3000,
                     steps: int = 4000, batch_size: int = 64,
                     learning_rate: float = 2e-3, warmup_steps: int = 100,
                     vocabulary_texts: int = 16000, held_out: int = 1000,
                     seed: int = 0) -> tuple[list[str], str, dict]:
    """Learns a vocabulary and pretrains the encoder by masked-language modelling
    (`kerastransfer/demo/text_pretrain.py`), or loads both from `out_dir` when
    a previous run with the same settings left them there.

    Args:
        texts: the unlabelled corpus.
        out_dir: where `vocab.txt`, `encoder.weights.h5` and `pretrain.json` go.
        vocabulary_size: WordPiece vocabulary size. Defaults to `3000`.
        steps: MLM steps. Defaults to `4000`.
        batch_size: MLM batch size. Defaults to `64`.
        learning_rate: peak AdamW rate. Defaults to `2e-3`.
        warmup_steps: linear warmup, then linear decay. Defaults to `100`.
        vocabulary_texts: the vocabulary is learned on at most this many texts
            (a seeded sample). Defaults to `16000`.
        held_out: texts of the corpus kept out of the MLM training to measure
            its masked-token accuracy. Defaults to `1000`.
        seed: seed of the samples, initialization and masking. Defaults to `0`.

    Returns:
        `(vocabulary, weights path, info)` (info: the held-out masked-token
        accuracy curve and its unigram baseline, seconds).
    """
    import keras_hub
    import numpy as np

    from kerastransfer.demo import text_pretrain
    from kerastransfer.io import atomic_write_text

    os.makedirs(out_dir, exist_ok=True)
    vocab_settings = {"vocabulary_size": vocabulary_size, "max_texts": vocabulary_texts,
                      "seed": seed, "corpus_texts": len(texts)}
    settings = {**vocab_settings, "steps": steps, "batch_size": batch_size,
                "learning_rate": learning_rate, "warmup_steps": warmup_steps,
                "held_out": held_out, "encoder": ENCODER,
                "sequence_length": SEQUENCE_LENGTH}
    vocab_file = os.path.join(out_dir, "vocab.txt")
    weights_file = os.path.join(out_dir, "encoder.weights.h5")
    info_file = os.path.join(out_dir, "pretrain.json")
    info = text_pretrain.cached(info_file, settings)
    if info is not None and os.path.exists(weights_file):
        with open(vocab_file, encoding="utf-8") as handle:
            vocabulary = handle.read().split("\n")
        logger.info("Reusing the pretrained encoder in %s", out_dir)
        return vocabulary, weights_file, info
    rng = np.random.default_rng(seed)
    vocab_info = text_pretrain.cached(os.path.join(out_dir, "vocab.json"),
                                      vocab_settings)
    if vocab_info is not None and os.path.exists(vocab_file):
        with open(vocab_file, encoding="utf-8") as handle:
            vocabulary = handle.read().split("\n")
    else:
        sample = texts
        if len(texts) > vocabulary_texts:
            sample = [texts[i] for i in sorted(
                rng.choice(len(texts), vocabulary_texts, replace=False))]
        started = time.perf_counter()
        import tensorflow as tf

        vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
            tf.data.Dataset.from_tensor_slices(sample).batch(256), vocabulary_size,
            lowercase=True, reserved_tokens=RESERVED)
        vocab_info = {"settings": vocab_settings,
                      "seconds": round(time.perf_counter() - started, 1)}
        atomic_write_text(vocab_file, "\n".join(vocabulary))
        text_pretrain.save_info(os.path.join(out_dir, "vocab.json"), vocab_info)
    tokens = text_pretrain.tokenize_all(_tokenizer(vocabulary), texts, SEQUENCE_LENGTH)
    order = np.random.default_rng(seed + 7).permutation(len(tokens))
    backbone = _encoder(len(vocabulary), seed)
    result = text_pretrain.train_masked_lm(
        backbone, tokens[order[held_out:]], steps=steps, batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=warmup_steps,
        eval_tokens=tokens[order[:held_out]], seed=seed)
    backbone.save_weights(weights_file)
    info = {"settings": settings, "texts": len(texts) - held_out,
            "vocabulary_seconds": vocab_info.get("seconds"), **result}
    text_pretrain.save_info(info_file, info)
    return vocabulary, weights_file, info


def _budget(labels, k: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), k, replace=False)
              for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def run_arms(corpus, vocabulary, weights_file, *, budgets=(4, 16, 64),
             seeds=(0, 1, 2), steps: int = STEPS,
             sequence_length: int = SEQUENCE_LENGTH,
             arms=("pretrained", "scratch", "tfidf_logreg")) -> dict:
    """Held-out accuracy of each arm at each budget and seed.

    Both neural arms train every layer for the same number of steps with the
    same optimizer (`TransformerAdamW(1e-3)`), batch and data order: they
    differ only in the encoder's initial weights (MLM-pretrained or random).
    `weights_file` is read once; every `pretrained` run starts from a copy of
    those weights.

    Returns:
        `{arm: {k: [accuracy per seed]}}` plus `"seconds"` per arm.
    """
    import keras
    import keras_hub
    import numpy as np

    from kerastransfer.tasks.text import TextClassifier, TransformerAdamW

    pool_x, pool_y = corpus.pool
    test_x, test_y = corpus.test
    mlm_weights = None
    if "pretrained" in arms:  # read the file once; every arm gets a copy
        loaded = _encoder(len(vocabulary), 0)
        loaded.load_weights(weights_file)
        mlm_weights = [np.array(w, copy=True) for w in loaded.get_weights()]
        del loaded
    results: dict = {arm: {} for arm in arms}
    seconds = {arm: 0.0 for arm in arms}
    for k in budgets:
        for seed in seeds:
            index = _budget(pool_y, k, 1000 * k + seed)
            x = [pool_x[i] for i in index]
            y = pool_y[index]
            batch = min(32, max(8, len(x) // 4))
            epochs = max(1, round(steps * batch / len(x)))
            for arm in arms:
                started = time.perf_counter()
                if arm == "tfidf_logreg":
                    accuracy = _tfidf(x, y, test_x, test_y)
                else:
                    keras.backend.clear_session()
                    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
                        _tokenizer(vocabulary), sequence_length=sequence_length)
                    encoder = _encoder(len(vocabulary), seed)
                    pretrained = arm == "pretrained"
                    if pretrained:
                        encoder.set_weights([w.copy() for w in mlm_weights])
                    keras.utils.set_random_seed(seed)
                    model = TextClassifier(
                        encoder, len(corpus.class_names),
                        sequence_length=sequence_length, preprocessor=preprocessor,
                        weights="pretrained" if pretrained else None,
                        class_names=corpus.class_names)
                    if pretrained:  # the MLM weights are the classifier's encoder
                        for a, b in zip(mlm_weights, model.backbone.get_weights(),
                                        strict=True):
                            np.testing.assert_array_equal(a, b)
                    model.compile(optimizer=TransformerAdamW(1e-3))
                    if pretrained:  # no frozen phase: every layer, as scratch
                        model.fit(x, y, epochs=0, fine_tune_epochs=epochs,
                                  fine_tune_lr=1e-3, unfreeze="all",
                                  batch_size=batch, verbose=0)
                    else:
                        model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
                    probabilities = model.predict(test_x, batch_size=128, verbose=0)
                    accuracy = float(np.mean(probabilities.argmax(1) == test_y))
                seconds[arm] += time.perf_counter() - started
                results[arm].setdefault(str(k), []).append(round(accuracy, 4))
                logger.info("k=%d seed=%d %s: %.3f", k, seed, arm, accuracy)
    results["seconds"] = {arm: round(s, 1) for arm, s in seconds.items()}
    return results


def _tfidf(x, y, test_x, test_y) -> float:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(x)
    classifier = LogisticRegression(C=10.0, max_iter=3000).fit(features, y)
    return float(np.mean(classifier.predict(vectorizer.transform(test_x)) == test_y))


def table(results: dict, budgets, arms) -> str:
    """A markdown table: mean ± std over the seeds per budget and arm."""
    import numpy as np

    lines = ["| labels/class | " + " | ".join(arms) + " |",
             "|---:|" + "---:|" * len(arms)]
    for k in budgets:
        cells = []
        for arm in arms:
            values = np.asarray(results[arm][str(k)])
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Command line: `python -m kerastransfer.demo.text [--out DIR] ...`."""
    parser = argparse.ArgumentParser(prog="python -m kerastransfer.demo.text",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="text_demo_output")
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"fine-tuning steps per arm (default {STEPS})")
    parser.add_argument("--pretrain-steps", type=int, default=4000)
    parser.add_argument("--vocabulary-size", type=int, default=3000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from kerastransfer.demo.text_corpus import build_corpus
    from kerastransfer.io import atomic_write_text

    corpus = build_corpus(chunk_words=24)
    vocabulary, weights, info = pretrain_encoder(
        corpus.pretraining, os.path.join(args.out, "pretrained"),
        vocabulary_size=args.vocabulary_size, steps=args.pretrain_steps,
        # 100 warmup steps (the 800- and 4,000-step runs); short runs: 1/8
        warmup_steps=min(100, max(1, args.pretrain_steps // 8)))
    arms = ("pretrained", "scratch", "tfidf_logreg")
    results = run_arms(corpus, vocabulary, weights, budgets=args.budgets,
                       seeds=args.seeds, steps=args.steps, arms=arms)
    summary = {"results": results, "pretraining": info,
               "class_names": corpus.class_names,
               "test_size": len(corpus.test[0]), "pool_size": len(corpus.pool[0]),
               "pretraining_texts": len(corpus.pretraining),
               "budgets": args.budgets, "seeds": args.seeds, "steps": args.steps}
    text = table(results, args.budgets, arms)
    atomic_write_text(os.path.join(args.out, "summary.json"),
                      json.dumps(summary, indent=2))
    atomic_write_text(os.path.join(args.out, "table.md"), text + "\n")
    logger.info("Held-out accuracy (%d test docstrings, %d families; mean ± std "
                "over seeds %s):\n%s", len(corpus.test[0]), len(corpus.class_names),
                args.seeds, text)
    return summary


if __name__ == "__main__":
    main()
