"""Medical and high-bit-depth image files for the data pipelines.

The reader itself is `kerastransfer.runtime.medical` (numpy, pydicom, nibabel and
Pillow only, so the TensorFlow-free runtime decodes the same files the same way);
this module re-exports it for `kerastransfer.data.read_image`.
"""

from kerastransfer.runtime.medical import (  # noqa: F401
    MEDICAL_EXTENSIONS,
    WINDOW_PRESETS,
    apply_window,
    is_medical_file,
    read_dicom_frames,
    read_image,
    read_volume_slices,
    resolve_window,
)

__all__ = ["read_image", "read_dicom_frames", "read_volume_slices", "is_medical_file",
           "MEDICAL_EXTENSIONS", "WINDOW_PRESETS", "resolve_window", "apply_window"]
