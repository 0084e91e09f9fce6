"""Image files: the one list of image file extensions (no TensorFlow, no Keras).

`IMAGE_EXTENSIONS` is what the runtime (Pillow) decodes and what folders are
searched for; `TF_IMAGE_EXTENSIONS` is the subset that the training pipelines'
`tf.io.decode_image` decodes (JPEG, PNG, GIF, BMP). `kerastransfer.data` imports
both from here, so the deployment side and the training side agree.
"""

from __future__ import annotations

__all__ = ["IMAGE_EXTENSIONS", "TF_IMAGE_EXTENSIONS"]

# Lower-case, with the dot, for `name.lower().endswith(IMAGE_EXTENSIONS)`.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# `tf.io.decode_image` decodes JPEG, PNG, GIF and BMP only (not WebP or TIFF).
TF_IMAGE_EXTENSIONS = tuple(e for e in IMAGE_EXTENSIONS
                            if e in (".jpg", ".jpeg", ".png", ".gif", ".bmp"))
