"""Tiny config-built KerasHub BERT encoders and a synthetic text task (offline)."""

from __future__ import annotations

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull"]
FILLER = ("the a is movie film plot acting was and very it this story cast "
          "music ending").split()
PIECES = ["##s", "##ing", "##ed", "##ly", "caf", "##é", "é", ".", ",", "!", "?", "'",
          "-", "(", ")", "\"", ":", "1", "2", "##0", "中", "国", "über", "ü", "##ber",
          "nai", "##ve", "na", "##ï", "don", "t", "e", "##e", "b"]
VOCAB = SPECIAL + POSITIVE + NEGATIVE + FILLER + PIECES


def make_preprocessor(sequence_length=16, lowercase=True, strip_accents=False):
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=list(VOCAB), lowercase=lowercase, strip_accents=strip_accents)
    return keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length)


def make_encoder(num_layers=2, hidden_dim=32, max_sequence_length=32, seed=0):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=num_layers, num_heads=2,
        hidden_dim=hidden_dim, intermediate_dim=2 * hidden_dim,
        max_sequence_length=max_sequence_length, dropout=0.0)


def sentiment_task(n, seed=0):
    """Texts of filler words with one sentiment word; label 1 = positive."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, 5))
        words.append(rng.choice(POSITIVE if label else NEGATIVE))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.array(labels)


# A varied corpus for tokenizer agreement: case, accents, punctuation, unknown
# words, sub-words, digits, CJK, extra whitespace, a long text (truncated).
CORPUS = [
    "The movie was GOOD.",
    "Café au lait, naïve über-film!",
    "It's the films' ending (2020): very 'dull'?",
    "Zyxwv qwerty unknownword the plot",
    "acting acted actingly stories",
    "中国 film 中国国",
    "  extra   spaces\tand\ttabs\nnewline  ",
    "don't, won't -- can't!!!",
    "É É é e\u0301 ü",
    "superbly-poor; awful:bad",
    " ".join(["the great film"] * 30),
    "x" * 150 + " film",
]
