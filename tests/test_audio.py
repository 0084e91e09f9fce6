"""Audio without training: the log-mel front end, file decoding, resampling,
augmentation, the loaders' bad-file reports, TF-Hub waveform backbones and the
TensorFlow-free runtime."""

from __future__ import annotations

import os

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile")

from training_helpers import run_without_tensorflow  # noqa: E402

from kerastransfer.audio import io as audio_io  # noqa: E402
from kerastransfer.data.audio_augment import AudioAugmentation  # noqa: E402
from kerastransfer.errors import DataError, HubModelError  # noqa: E402

SR = 16000


def _tone(freq, seconds=0.5, sr=SR, amplitude=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("float32")


def _peak_hz(x, sr):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)]


# --- Front end ---------------------------------------------------------------
def test_log_mel_shape_stft_equals_dft_conv_and_is_gain_invariant():
    from kerastransfer.audio.frontend import LogMelSpectrogram

    layer = LogMelSpectrogram(num_mel_bins=40)
    rng = np.random.default_rng(0)
    x = np.stack(
        [
            _tone(440) + 0.05 * rng.standard_normal(8000).astype("float32"),
            0.3 * rng.standard_normal(8000).astype("float32"),
        ]
    )
    out = np.asarray(layer(x))
    assert (
        out.shape == (2, 1 + 8000 // 160, 40, 1) == (2, layer.num_frames(8000), 40, 1)
    )
    # per-utterance normalization: zero mean, unit variance per clip
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-3)
    # the ONNX-exportable DFT convolution computes the same numbers as ops.stft
    layer.dft = "matmul"
    np.testing.assert_allclose(np.asarray(layer(x)), out, atol=1e-4)
    layer.dft = "stft"
    # loudness does not change the features (log + normalization)
    np.testing.assert_allclose(np.asarray(layer(0.1 * x)), out, atol=2e-3)
    # a 440 Hz tone puts its energy in the mel band holding 440 Hz
    band = int(np.argmax(out[0, 10:-10, :, 0].mean(axis=0)))
    edges = np.linspace(1127 * np.log1p(20 / 700), 1127 * np.log1p(8000 / 700), 42)
    centre_hz = 700 * np.expm1(edges[band + 1] / 1127)
    assert abs(centre_hz - 440) < 60


def test_log_mel_rejects_bad_arguments():
    from kerastransfer.audio.frontend import LogMelSpectrogram

    with pytest.raises(ValueError, match="hop_length must be a positive int"):
        LogMelSpectrogram(hop_length=0)
    with pytest.raises(ValueError, match="max_freq <= sample_rate / 2"):
        LogMelSpectrogram(sample_rate=8000, max_freq=6000)


# --- Decoding, channels, resampling -----------------------------------------
@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_read_audio_decodes_each_format(tmp_path, fmt):
    tone = _tone(440)
    path = tmp_path / f"a.{fmt.lower()}"
    soundfile.write(path, tone, SR, format=fmt)
    decoded = audio_io.read_audio(path, SR)
    assert decoded.dtype == np.float32 and abs(len(decoded) - len(tone)) <= 0
    tol = 0.05 if fmt == "OGG" else 1e-4  # Vorbis is lossy
    assert np.sqrt(np.mean((decoded - tone) ** 2)) < tol


def test_stereo_is_downmixed_or_one_channel_taken(tmp_path):
    left, right = _tone(440), _tone(880)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(
        audio_io.read_audio(path, SR), (left + right) / 2, atol=1e-6
    )
    np.testing.assert_allclose(
        audio_io.read_audio(path, SR, channels=1), right, atol=1e-6
    )
    with pytest.raises(DataError, match="has 2 channel"):
        audio_io.read_audio(path, SR, channels=2)


def test_bad_files_get_one_clear_error_each(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(DataError, match="Not an audio file soundfile can decode"):
        audio_io.read_audio(text, SR)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, "float32"), SR)
    with pytest.raises(DataError, match="no samples"):
        audio_io.read_audio(empty, SR)
    odd = tmp_path / "odd_rate.wav"
    soundfile.write(odd, _tone(5, seconds=1.0, sr=20), 20)
    with pytest.raises(DataError, match="ratios beyond 256"):
        audio_io.read_audio(odd, SR)
    with pytest.raises(FileNotFoundError):
        audio_io.read_audio(tmp_path / "missing.wav", SR)


def test_resampling_keeps_pitch_and_duration(tmp_path):
    path = tmp_path / "a8k.wav"
    soundfile.write(path, _tone(440, seconds=1.0, sr=8000), 8000)
    x = audio_io.read_audio(path, SR)
    assert len(x) == SR
    assert abs(_peak_hz(x, SR) - 440) < 2
    y = audio_io.resample(_tone(1000, 1.0, 48000), 48000, SR)
    assert len(y) == SR and abs(_peak_hz(y, SR) - 1000) < 2


def test_fit_length_pads_centred_and_crops():
    x = np.arange(1, 7, dtype="float32")
    np.testing.assert_array_equal(
        audio_io.fit_length(x, 10), [0, 0, 1, 2, 3, 4, 5, 6, 0, 0]
    )
    np.testing.assert_array_equal(audio_io.fit_length(x, 2), [3, 4])
    crops = {
        tuple(audio_io.fit_length(x, 2, "random", np.random.default_rng(s)))
        for s in range(30)
    }
    assert crops == {(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)}


# --- Augmentation (input pipeline only) --------------------------------------
def test_augmentation_snr_masks_and_determinism():
    clip = _tone(440)
    rng = np.random.default_rng(0)
    noisy = AudioAugmentation(
        gain_db=None, shift=0, snr_db=(10, 10), time_mask=0, freq_mask=0, probability=1
    )(clip, rng)
    noise = noisy - clip
    snr = 10 * np.log10(np.mean(clip**2) / np.mean(noise**2))
    assert abs(snr - 10) < 0.1
    masked = AudioAugmentation(
        gain_db=None, shift=0, snr_db=None, time_mask=0.5, freq_mask=0, probability=1
    )(clip, np.random.default_rng(3))
    zeros = np.sum(masked == 0) - np.sum(clip == 0)
    assert 0 < zeros <= 0.5 * len(clip) + 1
    band = AudioAugmentation(
        gain_db=None, shift=0, snr_db=None, time_mask=0, freq_mask=1.0, probability=1
    )
    # a mask that covers 440 Hz removes the tone; find a seed whose band does
    removed = [
        np.sqrt(np.mean(band(clip, np.random.default_rng(s)) ** 2)) for s in range(20)
    ]
    assert min(removed) < 0.05 * np.sqrt(np.mean(clip**2))
    a = AudioAugmentation()(clip, np.random.default_rng(7))
    b = AudioAugmentation()(clip, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="time_mask must be in"):
        AudioAugmentation(time_mask=2)


# --- Loaders -------------------------------------------------------------------
def test_load_audio_folder_reports_bad_files_and_splits(tmp_path):
    import kerastransfer as kt
    from kerastransfer.audio.synthetic import write_audio_folder

    names = write_audio_folder(str(tmp_path), 5, duration=0.25, broken=True)
    (tmp_path / names[1] / "readme.txt").write_text("x")
    data = kt.load_audio_folder(
        tmp_path, duration=0.25, validation_split=0.2, batch_size=4
    )
    reasons = {os.path.basename(p): r for p, r in data.skipped}
    assert set(reasons) == {"not_audio.wav", "empty.wav", "readme.txt"}
    assert "no samples" in reasons["empty.wav"]
    assert "Not an audio file" in reasons["not_audio.wav"]
    assert data.num_train + data.num_validation == 20 and data.num_validation == 4
    assert data.class_names == sorted(names) and data.num_samples == 4000
    x, y = next(iter(data.train))
    assert x.shape == (4, 4000) and x.dtype.name == "float32"
    assert np.max(np.abs(x.numpy())) <= 1.0
    xv, _ = next(iter(data.validation))
    assert xv.shape[1] == 4000
    with pytest.raises(ValueError, match="duration must be a positive"):
        kt.load_audio_folder(tmp_path / "nowhere", duration=0)


def test_load_audio_list_and_arrays(tmp_path):
    import kerastransfer as kt

    rows = []
    for i, freq in enumerate([300, 600, 900, 1200]):
        path = tmp_path / f"{i}.wav"
        soundfile.write(path, _tone(freq, 0.3, 8000), 8000)  # resampled to 16 kHz
        rows.append({"path": str(path), "label": "low" if freq < 700 else "high"})
    data = kt.load_audio_list(rows, duration=0.3, batch_size=8)
    assert data.class_names == ["high", "low"] and data.num_train == 4
    x, y = next(iter(data.train))
    assert x.shape == (4, 4800)
    with pytest.raises(DataError, match="NaN"):
        kt.audio_from_arrays(np.full((2, 100), np.nan), [0, 1])


# --- TF-Hub waveform backbones --------------------------------------------------
def _hub_model(path, *, waveform=True, samples=4000):
    import tensorflow as tf

    obj = tf.__internal__.tracking.AutoTrackable()
    kernel = tf.Variable(
        np.random.default_rng(0).normal(0, 0.1, (400, 8)).astype("float32"),
        name="proj/kernel",
    )
    obj.kernel = kernel
    obj.variables = [kernel]
    obj.trainable_variables = [kernel]
    obj.regularization_losses = []
    if waveform:

        @tf.function(input_signature=[tf.TensorSpec((None, None), tf.float32)])
        def call(x):  # frame embeddings (batch, frames, 8), YAMNet-style
            frames = tf.signal.frame(x, 400, 160)
            return tf.nn.relu(tf.einsum("bfs,sd->bfd", frames, kernel))
    else:

        @tf.function(input_signature=[tf.TensorSpec((None, 32, 32, 3), tf.float32)])
        def call(x):
            return tf.reduce_mean(x, axis=(1, 2)) @ kernel[:3]

    obj.__call__ = call
    tf.saved_model.save(obj, str(path))
    return str(path)


def test_hub_waveform_backbone_trains_and_non_waveform_is_refused(tmp_path):
    import kerastransfer as kt

    handle = _hub_model(tmp_path / "wave_hub")
    model = kt.AudioClassifier(
        f"tfhub:{handle}", num_classes=2, frontend="none", duration=0.25
    )
    assert (
        model.backbone.output.shape[1:] == (None, 8)
        or len(model.backbone.output.shape) == 3
    )
    x = np.random.default_rng(0).uniform(-1, 1, (8, 4000)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, np.array([0, 1] * 4), epochs=1, fine_tune_epochs=1, verbose=0)
    assert model.predict(x, verbose=0).shape == (8, 2)
    changed = [
        not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True)
    ]
    assert all(changed)  # hub projection and head both fine-tuned
    image_handle = _hub_model(tmp_path / "image_hub", waveform=False)
    with pytest.raises(HubModelError, match="must take float32 waveforms"):
        kt.AudioClassifier(
            f"tfhub:{image_handle}", num_classes=2, frontend="none", duration=0.25
        )


def test_audio_classifier_argument_errors():
    import kerastransfer as kt

    with pytest.raises(ValueError, match="frontend must be one of"):
        kt.AudioClassifier("spectrogram_cnn", 2, frontend="mfcc", weights=None)
    with pytest.raises(ValueError, match="takes spectrograms or images, not waveforms"):
        kt.AudioClassifier("spectrogram_cnn", 2, frontend="none", weights=None)
    with pytest.raises(kt.WeightsError, match="no bundled pretrained weights"):
        kt.AudioClassifier("spectrogram_cnn", 2)
    with pytest.raises(ValueError, match="duration must be a positive"):
        kt.AudioClassifier("spectrogram_cnn", 2, weights=None, duration=-1)


def test_runtime_audio_never_imports_tensorflow():
    run_without_tensorflow(
        "import kerastransfer.runtime as r; r.AudioPredictor\n"
        "from kerastransfer.runtime.audio import predict_audio_files\n"
        "import kerastransfer.audio.io\n")


def test_catalog_image_backbone_gets_a_one_channel_first_conv(tmp_path):
    import keras

    import kerastransfer as kt

    rng = np.random.default_rng(0)
    source = kt.get_backbone("mobilenet_v3_small").build((48, 64, 3), weights=None)
    source.set_weights([w + 0.01 * rng.standard_normal(w.shape).astype(w.dtype)
                        for w in source.get_weights()])
    weights = tmp_path / "mnv3.weights.h5"
    source.save_weights(weights)
    model = kt.AudioClassifier("mobilenet_v3_small", num_classes=2,
                               weights=str(weights), duration=0.3, hop_length=102)
    assert model.image_input and model.backbone.input_shape[-1] == 1
    x = (0.3 * rng.standard_normal((2, 4800))).astype("float32")
    # the adapted backbone on one channel == the pretrained one on it repeated x3
    spec = np.asarray(model.frontend(x)) * 64.0 + 127.5
    assert spec.shape[1:] == (48, 64, 1)
    np.testing.assert_allclose(np.asarray(model.backbone(spec)),
                               np.asarray(source(np.repeat(spec, 3, -1))),
                               atol=1e-3, rtol=1e-3)
    assert model.get_config()["image_input"] is True  # saved: reloads the same graph
    keras.backend.clear_session()
