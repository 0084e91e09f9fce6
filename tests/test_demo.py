"""The demo (`make demo`) runs end to end offline and writes what it promises."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = {"pretrained", "scratch", "raw_pixels", "random_frozen"}


@pytest.mark.slow
def test_demo_runs_offline_and_writes_its_outputs(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "kerastransfer.demo", "--budgets", "1", "10",
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Held-out accuracy" in run.stdout
    # TensorFlow's native start-up lines are not the user's concern
    assert "absl::InitializeLog" not in run.stderr and "cuda" not in run.stderr, \
        run.stderr[:2000]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0]
    assert set(summary["transfer"]) == {"1", "10"}
    for k in ("1", "10"):
        assert set(summary["transfer"][k]) == ARMS
    one, ten = summary["transfer"]["1"], summary["transfer"]["10"]
    # Measured (seed 0, every probe self-trained on the unlabelled target
    # images, scratch retrained on its own pseudo-labels; default threads):
    # k=1 pretrained 0.829, scratch 0.526, raw pixels 0.711, random frozen
    # 0.364; k=10 pretrained 0.960, scratch 0.927, raw pixels 0.902, random
    # frozen 0.914 (without self-training, k=1 pretrained was 0.754).
    assert one["pretrained"] > 0.80, one
    assert one["pretrained"] - one["raw_pixels"] > 0.05, one
    assert one["pretrained"] - one["scratch"] > 0.15, one
    assert ten["pretrained"] > 0.94 and ten["scratch"] > 0.8, ten
    assert ten["pretrained"] - ten["raw_pixels"] > 0.04, ten
    assert ten["pretrained"] > ten["scratch"], ten
    assert one["random_frozen"] < one["pretrained"]
    rows = [r for r in summary["rows"] if r["k"] == 10 and r["arm"] == "pretrained"]
    curve = rows[0]["curve"]
    assert curve[0][0] == 1 and curve[0][2] == pytest.approx(rows[0]["probe_accuracy"])
    assert abs(curve[-1][2] - rows[0]["accuracy"]) < 1e-6
    assert summary["onnx"]["top1_agreement"] == 1.0
    assert summary["onnx"]["test_max_abs_diff"] < 1e-4
    for name in ("learning_curves.png", "confusion_matrix.png", "time_to_accuracy.png"):
        path = out / "report" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000
    assert (out / "model.onnx").stat().st_size > 10000
    assert summary["speed_batch1"]["median_ms"]["onnxruntime"] > 0


def test_demo_task_option_dispatches_to_the_task_demo(monkeypatch):
    """`python -m kerastransfer.demo --task audio ...` runs the audio demo with
    the remaining arguments."""
    import kerastransfer.demo.__main__ as demo_main
    import kerastransfer.demo.audio as audio_demo

    seen = []
    monkeypatch.setattr(audio_demo, "main", lambda argv: seen.append(argv) or 7)
    assert demo_main.main(["--task", "audio", "--quick"]) == 7
    assert seen == [["--quick"]]
