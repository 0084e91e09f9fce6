"""Masked-language-model pretraining of the text demo's tiny BERT.

Why not `BertMaskedLM.fit(texts)` with its `BertMaskedLMPreprocessor`: that
path tokenizes and masks every batch again inside `tf.data` and ignores
`shuffle=True` for the dataset it builds (Keras warns), so the batches follow
the corpus order (consecutive chunks of one source file). The demo's first
run trained that way for 1,500 steps at a constant rate of 2e-3 and never
left the unigram plateau (predicting the most frequent tokens whatever the
context); on the same encoder and rate, shuffled batches masked as here gave
a held-out masked-token accuracy of 0.135 after 600 steps against 0.048 for
the unigram baseline (docs/text.md). Here the corpus
is tokenized once (`BertTokenizer`), packed as `[CLS] ... [SEP]`, and each
chunk of steps draws shuffled examples and masks them afresh in numpy with
BERT's rule (15% of the word-piece positions, at most `MASK_SLOTS`; of those
80% `[MASK]`, 10% a random token, 10% unchanged). The encoder is trained by
`BertMaskedLM` (its head's output projection tied to the token embedding)
with AdamW, warmup then linear decay. Masked-token accuracy is measured on
chunks of the pretraining corpus held out of the MLM training (never on the
labelled texts), next to the unigram baseline of those same positions.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

__all__ = ["pack_ids", "mask_tokens", "train_masked_lm", "MASK_SLOTS"]

logger = logging.getLogger("kerastransfer.demo")

MASK_SLOTS = 8  # masked positions per text at most (15% of 32 tokens is ~4.5)
CLS, SEP, MASK, FIRST_WORD = 2, 3, 4, 5  # ids in the demo's vocabulary order


def pack_ids(token_lists, length: int) -> np.ndarray:
    """`[CLS] tokens [SEP] [PAD]...` as an int32 `(n, length)` array (tokens
    truncated to `length - 2`)."""
    packed = np.zeros((len(token_lists), length), np.int32)
    for i, tokens in enumerate(token_lists):
        row = [CLS, *list(tokens)[:length - 2], SEP]
        packed[i, :len(row)] = row
    return packed


def mask_tokens(tokens: np.ndarray, rng, vocabulary_size: int, rate: float = 0.15):
    """BERT's masking of packed token ids.

    Args:
        tokens: int32 `(n, length)` from `pack_ids`.
        rng: a `numpy.random.Generator`.
        vocabulary_size: random replacements are drawn from the word pieces.
        rate: share of word-piece positions selected. Defaults to `0.15`.

    Returns:
        `(inputs, labels, weights)`: the `BertMaskedLM` input dict, the
        original ids at the selected positions `(n, MASK_SLOTS)` and their
        weights (1 for a selected position, 0 for an unused slot).
    """
    corrupted = tokens.copy()
    positions = np.zeros((len(tokens), MASK_SLOTS), np.int32)
    labels = np.zeros_like(positions)
    weights = np.zeros(positions.shape, np.float32)
    for i, row in enumerate(tokens):
        candidates = np.flatnonzero(row >= FIRST_WORD)
        if candidates.size == 0:
            continue
        count = min(MASK_SLOTS, max(1, int(round(rate * candidates.size))))
        chosen = np.sort(rng.choice(candidates, count, replace=False))
        positions[i, :count] = chosen
        labels[i, :count] = row[chosen]
        weights[i, :count] = 1.0
        draw = rng.random(count)
        corrupted[i, chosen[draw < 0.8]] = MASK
        swapped = chosen[(draw >= 0.8) & (draw < 0.9)]
        corrupted[i, swapped] = rng.integers(FIRST_WORD, vocabulary_size, swapped.size)
    inputs = {"token_ids": corrupted, "segment_ids": np.zeros_like(corrupted),
              "padding_mask": tokens > 0, "mask_positions": positions}
    return inputs, labels, weights


def train_masked_lm(backbone, tokens: np.ndarray, *, steps: int, batch_size: int,
                    learning_rate: float, warmup_steps: int, eval_tokens: np.ndarray,
                    seed: int, log_every: int = 400) -> dict:
    """Pretrains `backbone` in place by masked-language modelling.

    Args:
        backbone: a `keras_hub.models.BertBackbone`.
        tokens: packed training texts, int32 `(n, length)`.
        steps: optimizer steps.
        batch_size: texts per step.
        learning_rate: peak rate of AdamW (weight decay 0.01, clipnorm 1).
        warmup_steps: linear warmup steps, then linear decay to 0.
        eval_tokens: packed held-out texts (masked once, with a fixed seed).
        seed: data order and masking.
        log_every: steps between two evaluations. Defaults to `400`.

    Returns:
        `{"curve": [[step, held-out masked-token accuracy], ...],
        "unigram_accuracy": accuracy of always predicting the most frequent
        training token at the held-out masked positions, "loss": last chunk's
        training loss, "seconds": training time}`.
    """
    import keras
    import keras_hub

    from kerastransfer.training.schedules import WarmupLinearDecay

    vocabulary_size = backbone.vocabulary_size
    masked_lm = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    schedule = WarmupLinearDecay(learning_rate, total_steps=steps,
                                 warmup_steps=warmup_steps)
    masked_lm.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["sparse_categorical_accuracy"])
    eval_x, eval_y, eval_w = mask_tokens(eval_tokens, np.random.default_rng(seed + 1),
                                         vocabulary_size)
    counts = np.bincount(tokens[tokens >= FIRST_WORD], minlength=vocabulary_size)
    unigram = float(np.sum((eval_y == counts.argmax()) * eval_w) / eval_w.sum())
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    curve, done, loss = [], 0, float("nan")
    while done < steps:
        chunk = min(log_every, steps - done)
        index = rng.choice(len(tokens), chunk * batch_size,
                           replace=chunk * batch_size > len(tokens))
        x, y, w = mask_tokens(tokens[index], rng, vocabulary_size)
        history = masked_lm.fit(x, y, sample_weight=w, batch_size=batch_size,
                                epochs=1, shuffle=False, verbose=0)
        loss = float(history.history["loss"][-1])
        done += chunk
        result = masked_lm.evaluate(eval_x, eval_y, sample_weight=eval_w,
                                    batch_size=256, verbose=0, return_dict=True)
        curve.append([done, round(float(result["sparse_categorical_accuracy"]), 4)])
        logger.info("MLM step %d: held-out masked-token accuracy %.3f (unigram %.3f)",
                    done, curve[-1][1], unigram)
    return {"curve": curve, "unigram_accuracy": round(unigram, 4),
            "loss": round(loss, 4), "seconds": round(time.perf_counter() - started, 1)}


def save_info(path: str, info: dict) -> None:
    """Writes `info` as JSON, atomically."""
    from kerastransfer.io import atomic_write_text

    atomic_write_text(path, json.dumps(info, indent=2))


def tokenize_all(tokenizer, texts, length: int) -> np.ndarray:
    """Tokenizes `texts` once (batches of 512) and packs them (`pack_ids`)."""
    token_lists = []
    for start in range(0, len(texts), 512):
        batch = tokenizer(texts[start:start + 512])
        token_lists.extend(batch if isinstance(batch, list) else batch.to_list())
    return pack_ids(token_lists, length)


def cached(path: str, settings: dict):
    """The JSON at `path` if its `"settings"` equal `settings`, else `None`."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        info = json.load(handle)
    return info if info.get("settings") == settings else None
