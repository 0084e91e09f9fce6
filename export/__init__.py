"""The edge deployment kit: an HTTP inference service over `OnnxPredictor`.

Needs no TensorFlow: it installs from `export/requirements.txt` plus
`pip install --no-deps .` (for `kerastransfer.runtime`). Start it from the
repository root with `python -m export.service model.onnx --port 8080`.
"""
