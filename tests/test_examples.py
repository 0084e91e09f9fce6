"""The example scripts' --smoke modes run end to end, so the examples never rot."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("script", ["cats_vs_dogs_xception.py",
                                    "flowers_mobilenet_v3.py"])
def test_example_smoke_mode(script, tmp_path):
    code = (
        "import json, sys; sys.path.insert(0, 'examples');"
        f"import {script[:-3]} as ex;"
        f"r = ex.main(['--smoke', '--out', {str(tmp_path)!r}]);"
        "print('RESULT', json.dumps(r))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    line = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["top1_agreement"] == 1.0
    assert result["max_abs_diff"] < 1e-4
    assert os.path.getsize(tmp_path / "model.onnx") > 1000
    assert os.path.exists(tmp_path / "model.keras")
