"""The edge service with an audio model: a POSTed WAV gets the same answer as
`AudioPredictor.predict_files`; bad audio gets a JSON 4xx."""

from __future__ import annotations

import io

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile")
falcon_testing = pytest.importorskip("falcon.testing")


@pytest.fixture(scope="module")
def audio_onnx(tmp_path_factory):
    import kerastransfer as kt
    from kerastransfer.export import export_onnx

    folder = tmp_path_factory.mktemp("audio_service")
    model = kt.AudioClassifier(
        "spectrogram_cnn",
        class_names=["a", "b", "c"],
        weights=None,
        duration=0.25,
        num_mel_bins=16,
        hop_length=256,
    )
    export_onnx(model, folder / "kws.onnx")
    return folder


def _wav(samples, rate=16000):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV")
    return buffer.getvalue()


def test_posted_wav_matches_predict_files(audio_onnx):
    from export.service import create_app
    from kerastransfer.runtime.audio import AudioPredictor, is_audio_model

    path = audio_onnx / "kws.onnx"
    assert is_audio_model(path)
    predictor = AudioPredictor(path)
    client = falcon_testing.TestClient(create_app(predictor))
    rng = np.random.default_rng(0)
    clip = (0.3 * rng.standard_normal(6000)).astype("float32")  # 8 kHz, 0.75 s
    data = _wav(clip, 8000)
    (audio_onnx / "clip.wav").write_bytes(data)
    expected = predictor.predict_files([audio_onnx / "clip.wav"], top_k=3)[0]
    result = client.simulate_post(
        "/predict?probabilities=true&top_k=3",
        body=data,
        headers={"Content-Type": "audio/wav"},
    )
    assert result.status_code == 200, result.text
    entry = result.json["predictions"][0]
    np.testing.assert_allclose(
        entry["probabilities"], expected["probabilities"], atol=1e-6
    )
    assert [t["class_name"] for t in entry["top_k"]] == [
        c for c, _ in expected["top_k"]
    ]
    bad = client.simulate_post(
        "/predict", body=b"not audio", headers={"Content-Type": "audio/wav"}
    )
    assert (
        bad.status_code == 400 and "Not an audio file" in bad.json["error"]["message"]
    )
    empty = client.simulate_post(
        "/predict",
        body=_wav(np.zeros(0, "float32")),
        headers={"Content-Type": "audio/wav"},
    )
    assert empty.status_code == 400 and "zero length" in empty.json["error"]["message"]
    png = client.simulate_post(
        "/predict", body=b"\x89PNG....", headers={"Content-Type": "image/png"}
    )
    assert png.status_code == 415 and "audio model" in png.json["error"]["message"]
