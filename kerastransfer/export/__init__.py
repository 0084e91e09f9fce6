"""Export to ONNX: convert (tf2onnx), validate, optimize, quantize, metadata.

Example:

>>> from kerastransfer.export import export_onnx
>>> report = export_onnx(model, "model.onnx", quantize="static",
...                      calibration_data="images/")  # doctest: +SKIP
"""

from kerastransfer.export.metadata import read_metadata
from kerastransfer.export.onnx import ExportReport, convert_to_onnx, export_onnx
from kerastransfer.export.optimize import count_ops, optimize_onnx
from kerastransfer.export.quantize import agreement, convert_fp16, quantize_onnx
from kerastransfer.export.validate import validate_onnx

__all__ = [
    "export_onnx",
    "ExportReport",
    "convert_to_onnx",
    "read_metadata",
    "optimize_onnx",
    "count_ops",
    "quantize_onnx",
    "convert_fp16",
    "agreement",
    "validate_onnx",
]
