"""Dynamic int8 vs float32 onnxruntime for a text classifier, in one run.

A BERT encoder of `bert_tiny_en_uncased`'s shape (2 layers, 2 heads, hidden
128, intermediate 512; built from a config, no download) with a WordPiece
vocabulary of `--vocab` generated words is trained for `--epochs` epochs on a
synthetic topic task (each text: filler words and one topic word of 4
classes), so its logits have the margins of a trained model. It is exported
twice, float32 and dynamic int8 (`quantize="dynamic"`: int8 weights of the
MatMuls, activations quantized on the fly), and `TextPredictor.predict` is
timed on both files side by side at batch sizes 1 and 32 (median of
`--repeats` calls, the two files alternating), tokenization included, as a
client runs it. Agreement is the share of held-out texts whose top class the
int8 file keeps.

Usage:
    python benchmarks/text_int8.py [--sequence-length 128] [--epochs 3]
        [--repeats 20] [--vocab 2000]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

# 3, as the command line: level 2 still prints the cuInit error of a GPU-less machine
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# benchmarks/timing.py (the script's folder), after the log level is set
from timing import alternating_medians, print_ratio_table  # noqa: E402

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOPICS = [["goal", "match", "team"], ["stock", "market", "bank"],
          ["gene", "cell", "virus"], ["song", "album", "band"]]


def topic_texts(words: list[str], n: int, seed: int, length: int):
    """`n` texts of `length` filler words with one topic word; labels 0-3."""
    import numpy as np

    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % len(TOPICS)
        chosen = list(rng.choice(words, length - 1))
        chosen.insert(int(rng.integers(0, length)), str(rng.choice(TOPICS[label])))
        texts.append(" ".join(chosen))
        labels.append(label)
    return texts, np.array(labels)


def trained_model(vocab_size: int, sequence_length: int, epochs: int):
    """A `TextClassifier` on a bert_tiny-shaped encoder, trained briefly."""
    import keras
    import keras_hub

    import kerastransfer as kt

    keras.utils.set_random_seed(0)
    words = [f"w{i}" for i in range(vocab_size)]
    vocab = SPECIAL + [w for topic in TOPICS for w in topic] + words
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length)
    encoder = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=2, num_heads=2, hidden_dim=128,
        intermediate_dim=512, max_sequence_length=512, dropout=0.0)
    model = kt.TextClassifier(encoder, sequence_length=sequence_length,
                              preprocessor=preprocessor, weights=None,
                              class_names=["sport", "finance", "biology", "music"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    texts, labels = topic_texts(words, 512, seed=0, length=sequence_length // 2)
    model.fit(texts, labels, epochs=epochs, batch_size=32, verbose=0)
    return model, words


def bench(sequence_length: int, epochs: int, repeats: int, vocab_size: int,
          folder: str) -> None:
    from kerastransfer.export import export_onnx
    from kerastransfer.runtime import TextPredictor

    model, words = trained_model(vocab_size, sequence_length, epochs)
    held_out, truth = topic_texts(words, 256, seed=1, length=sequence_length // 2)
    paths = {k: os.path.join(folder, f"text_{k}.onnx") for k in ("fp32", "int8")}
    fp32 = export_onnx(model, paths["fp32"], validation_data=held_out[:64])
    q = export_onnx(model, paths["int8"], quantize="dynamic",
                    validation_data=held_out)
    predictors = {k: TextPredictor(p) for k, p in paths.items()}
    top = {k: p.predict(held_out).argmax(1) for k, p in predictors.items()}
    agreement = float((top["fp32"] == top["int8"]).mean())
    accuracy = {k: float((t == truth).mean()) for k, t in top.items()}

    results = alternating_medians({k: p.predict for k, p in predictors.items()},
                                  {b: held_out[:b] for b in (1, 32)}, repeats)

    print(f"\n== BERT 2x128 (bert_tiny shape), sequence length {sequence_length}, "
          f"{len(model.preprocessor.tokenizer.vocabulary)} tokens ==")
    print(f"float32 export max |dprob| vs Keras: {fp32.max_abs_diff:.2g}")
    print_ratio_table(results, {"fp32": "ORT fp32 (ms)",
                                "int8": "ORT int8 dynamic (ms)"}, (1, 32))
    print(f"int8 top-1 agreement with fp32 on {len(held_out)} held-out texts: "
          f"{agreement:.4f} (export report: {q.agreement:.4f}, max |dprob| "
          f"{q.quantized_max_abs_diff:.3g}); accuracy fp32 {accuracy['fp32']:.3f}, "
          f"int8 {accuracy['int8']:.3f}; file size "
          f"{os.path.getsize(paths['int8']) / os.path.getsize(paths['fp32']):.2f}x",
          flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--vocab", type=int, default=2000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("root").setLevel(logging.ERROR)  # quantizer's INFO/WARNING
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs visible")
    with tempfile.TemporaryDirectory(prefix="text_int8_") as folder:
        bench(args.sequence_length, args.epochs, args.repeats, args.vocab, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
