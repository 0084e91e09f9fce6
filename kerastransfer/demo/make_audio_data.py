"""Regenerates the audio demo's clips and its pretrained keyword backbone.

Needs Debian's espeak-ng (not needed to *run* the demo: the clips are shipped):

    apt-get update && apt-get install -y espeak-ng
    python -m kerastransfer.demo.make_audio_data            # clips + weights
    python -m kerastransfer.demo.make_audio_data --clips-only

Data (`kerastransfer/demo/data/audio_keywords.npz`): keywords synthesized by
espeak-ng, resampled to 8 kHz (soxr) and stored as OGG/Vorbis bytes (a few
hundred KB; `kerastransfer.demo.audio` decodes them with soundfile and
resamples them to 16 kHz, as any user file):

* source: 20 English keywords, English voices (US, British, Scottish, RP,
  Caribbean, Lancaster accents), 2 voice variants, 2 speaking rates, 2 pitches;
* target: 10 of the keywords spoken by voices of 10 other languages (German,
  French, Spanish, Italian, Dutch, Polish, Portuguese, Swedish, Czech,
  Hungarian: the English words read with that language's phonetics), 2
  variants, 2 rates.

Weights (`kerastransfer/demo/data/audio_kws_cnn.weights.h5`): the built-in
`spectrogram_cnn` trained on the source keywords (with noise augmentation) —
the pretrained backbone the demo adapts to the target voices.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import tempfile

import click
import numpy as np

logger = logging.getLogger("kerastransfer.demo.audio")

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DATA_FILE = os.path.join(HERE, "audio_keywords.npz")
WEIGHTS_FILE = os.path.join(HERE, "audio_kws_cnn.weights.h5")
STORE_RATE = 8000
WORDS = [
    "yes",
    "no",
    "up",
    "down",
    "left",
    "right",
    "on",
    "off",
    "stop",
    "go",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
]
SOURCE_VOICES = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
]
TARGET_VOICES = ["de", "fr", "es", "it", "nl", "pl", "pt", "sv", "cs", "hu"]
TARGET_WORDS = WORDS[:10]
VARIANTS = ["m3", "f2"]
RATES = [135, 185]
PITCHES = [35, 65]


def _speak(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    import soundfile

    from kerastransfer.audio.io import resample

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "w.wav")
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                voice,
                "-s",
                str(rate),
                "-p",
                str(pitch),
                "-w",
                path,
                text,
            ],
            check=True,
            capture_output=True,
        )
        samples, rate_hz = soundfile.read(path, dtype="float32")
    samples = resample(samples, int(rate_hz), STORE_RATE)
    loud = np.flatnonzero(np.abs(samples) > 0.02)  # trim leading/trailing silence
    if len(loud):
        samples = samples[max(0, loud[0] - 200) : loud[-1] + 200]
    return samples / max(1e-3, float(np.max(np.abs(samples)))) * 0.7


def _ogg(samples: np.ndarray) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, STORE_RATE, format="OGG", subtype="VORBIS")
    return buffer.getvalue()


def make_clips(path: str = DATA_FILE) -> dict:
    """Synthesizes every clip and writes the compressed data file."""
    blobs, labels, voices, split = [], [], [], []
    plan = [
        ("source", w, v, var, r, p)
        for w in WORDS
        for v in SOURCE_VOICES
        for var in VARIANTS
        for r in RATES
        for p in PITCHES[: 1 + (v in SOURCE_VOICES[:2])]
    ]
    plan += [
        ("target", w, v, var, r, 50)
        for w in TARGET_WORDS
        for v in TARGET_VOICES
        for var in VARIANTS
        for r in RATES
    ]
    for part, word, voice, variant, rate, pitch in plan:
        blobs.append(
            np.frombuffer(
                _ogg(_speak(word, f"{voice}+{variant}", rate, pitch)), dtype=np.uint8
            )
        )
        labels.append(WORDS.index(word))
        voices.append(f"{voice}+{variant}@{rate}/{pitch}")
        split.append(part)
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    np.savez_compressed(
        path,
        ogg=np.concatenate(blobs),
        offsets=offsets,
        labels=np.asarray(labels, "int16"),
        voices=np.asarray(voices),
        split=np.asarray(split),
        words=np.asarray(WORDS),
        store_rate=STORE_RATE,
    )
    logger.info(
        "Wrote %d clips to %s (%d bytes)", len(blobs), path, os.path.getsize(path)
    )
    return {"clips": len(blobs), "bytes": os.path.getsize(path)}


def pretrain(path: str = WEIGHTS_FILE, epochs: int = 25, seed: int = 0) -> dict:
    """Trains the spectrogram CNN on the source keywords; saves its backbone."""
    import keras

    from kerastransfer.data.audio import AudioAugmentation, audio_from_arrays
    from kerastransfer.demo.audio import FRONTEND, load_clips
    from kerastransfer.tasks.audio import AudioClassifier

    keras.utils.set_random_seed(seed)
    x, y, _ = load_clips("source")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    cut = len(x) // 10
    val, train = order[:cut], order[cut:]
    data = audio_from_arrays(
        x[train],
        y[train],
        class_names=WORDS,
        batch_size=32,
        augmentation=AudioAugmentation(snr_db=(5, 25)),
        seed=seed,
    )
    model = AudioClassifier(
        "spectrogram_cnn", class_names=WORDS, weights=None, **FRONTEND
    )
    model.fit(data, epochs=epochs, verbose=2, validation_data=(x[val], y[val]))
    accuracy = float(np.mean(np.argmax(model.predict(x[val], verbose=0), 1) == y[val]))
    model.backbone.save_weights(path)
    logger.info("Source validation accuracy %.3f; wrote %s", accuracy, path)
    return {"source_val_accuracy": accuracy, "bytes": os.path.getsize(path)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-only", action="store_true")
    parser.add_argument("--epochs", type=int, default=25)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    click.echo(make_clips())
    if not args.clips_only:
        click.echo(pretrain(epochs=args.epochs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
