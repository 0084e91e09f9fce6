"""The demo (`make demo`) runs end to end offline and writes what it promises."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_demo_runs_offline_and_writes_its_outputs(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "kerastransfer.demo", "--budgets", "10",
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Transfer vs scratch" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    arms = {row["arm"]: row for row in summary["rows"]}
    assert set(arms) == {"pretrained", "scratch"}
    for row in arms.values():  # both learn far above chance (0.1) on 800 images
        assert row["test_accuracy"] > 0.6, row
    assert summary["onnx"]["top1_agreement"] == 1.0
    assert summary["onnx"]["test_max_abs_diff"] < 1e-4
    for name in ("learning_curves.png", "confusion_matrix.png"):
        path = out / "report" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000
    assert (out / "model.onnx").stat().st_size > 10000
    assert summary["speed_batch1"]["median_ms"]["onnxruntime"] > 0
