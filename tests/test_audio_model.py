"""AudioClassifier end to end on a synthetic task (pitch patterns in noise):
training to >= 0.9 held-out accuracy, resume, `.keras` round trip, ONNX export
with the front end in the graph, `AudioPredictor` parity and static int8."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("soundfile")

import kerastransfer as kt  # noqa: E402
from kerastransfer.audio.synthetic import make_pitch_patterns  # noqa: E402

DURATION = 0.5
SMALL = dict(duration=DURATION, num_mel_bins=32, hop_length=256, weights=None)


@pytest.fixture(scope="module")
def clips():
    x, y, names = make_pitch_patterns(30, duration=DURATION, seed=0)
    xv, yv, _ = make_pitch_patterns(25, duration=DURATION, seed=1)  # held out
    return x, y, xv, yv, names


@pytest.fixture(scope="module")
def trained(clips, tmp_path_factory):
    import keras

    x, y, xv, yv, names = clips
    keras.utils.set_random_seed(0)
    model = kt.AudioClassifier("spectrogram_cnn", class_names=names, **SMALL)
    folder = tmp_path_factory.mktemp("ckpt")
    history = model.fit(
        x, y, epochs=3, batch_size=16, verbose=0, checkpoint_dir=str(folder)
    )
    return model, history, folder


def test_trains_to_held_out_accuracy(trained, clips):
    model, history, _ = trained
    _, _, xv, yv, _ = clips
    accuracy = float(np.mean(np.argmax(model.predict(xv, verbose=0), 1) == yv))
    assert accuracy >= 0.9, accuracy
    assert len(history.history["loss"]) == 3  # weights=None: one phase, 3 epochs


def test_resume_returns_the_finished_run(trained, clips):
    model, history, folder = trained
    x, y, xv, _, names = clips
    again = kt.AudioClassifier("spectrogram_cnn", class_names=names, **SMALL)
    resumed = again.fit(
        x, y, epochs=3, batch_size=16, verbose=0, checkpoint_dir=str(folder)
    )
    assert resumed.history["loss"] == pytest.approx(history.history["loss"])
    np.testing.assert_allclose(
        again.predict(xv, verbose=0), model.predict(xv, verbose=0), atol=1e-6
    )


def test_keras_round_trip_is_exact(trained, clips, tmp_path):
    model, _, _ = trained
    xv = clips[2]
    path = tmp_path / "kws.keras"
    model.save(path)
    loaded = kt.load_model(path)
    assert type(loaded).__name__ == "AudioClassifier"
    assert loaded.export_contract() == model.export_contract()
    np.testing.assert_array_equal(
        loaded.predict(xv, verbose=0), model.predict(xv, verbose=0)
    )


def test_frozen_phase_with_feature_cache_trains_only_the_head(clips, tmp_path):
    x, y, _, _, names = clips
    pretrained = kt.AudioClassifier("spectrogram_cnn", class_names=names, **SMALL)
    weights = tmp_path / "backbone.weights.h5"
    pretrained.backbone.save_weights(weights)
    model = kt.AudioClassifier(
        "spectrogram_cnn", class_names=names, **{**SMALL, "weights": str(weights)}
    )
    assert model.pretrained
    before = [w.copy() for w in model.backbone.get_weights()]
    history = model.fit(
        x[:40], y[:40], epochs=1, batch_size=16, verbose=0, cache_features=True
    )
    assert [p["name"] for p in history.phases] == ["frozen"]
    for a, b in zip(before, model.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_export_parity_predictor_and_int8(trained, clips, tmp_path):
    from kerastransfer.export import export_onnx
    from kerastransfer.runtime import AudioPredictor, OnnxPredictor

    model, _, _ = trained
    x, _, xv, yv, names = clips
    report = export_onnx(model, tmp_path / "kws.onnx", validation_data=xv)
    assert report.max_abs_diff <= 1e-4
    predictor = AudioPredictor(tmp_path / "kws.onnx")
    assert type(OnnxPredictor(tmp_path / "kws.onnx")) is AudioPredictor
    assert predictor.sample_rate == 16000 and predictor.num_samples == 8000
    assert predictor.class_names == names
    keras_probs = model.predict(xv, verbose=0)
    np.testing.assert_allclose(predictor.predict(xv), keras_probs, atol=1e-4)
    with pytest.raises(ValueError, match=r"waveforms must be \(n, 8000\)"):
        predictor.predict(xv[:, :100])
    # files: written at 8 kHz stereo, decoded/resampled/downmixed like training
    import soundfile

    folder = tmp_path / "clips"
    folder.mkdir()
    soundfile.write(folder / "a.wav", np.stack([xv[0], xv[0]], 1), 16000)
    (folder / "b.wav").write_text("no audio")
    results = predictor.predict_files(folder, top_k=2)
    assert [r["path"].split("/")[-1] for r in results] == ["a.wav"]
    np.testing.assert_allclose(results[0]["probabilities"], keras_probs[0], atol=1e-4)
    assert [p.split("/")[-1] for p, _ in predictor.skipped] == ["b.wav"]
    # static int8: the front end stays float32; agreement on held-out clips
    q = export_onnx(
        model,
        tmp_path / "kws_int8.onnx",
        quantize="static",
        calibration_data=x[:64],
        validation_data=xv,
    )
    assert q.agreement >= 0.99, q.agreement
    int8 = AudioPredictor(tmp_path / "kws_int8.onnx")
    assert np.mean(np.argmax(int8.predict(xv), 1) == yv) >= 0.9
