"""The deployment side: numpy + onnxruntime only, never TensorFlow or Keras.

- `base.py`: onnxruntime sessions, providers, the metadata contract (keys,
  decoding, the `model.json` sidecar);
- `preprocess.py`: each backbone family's normalization in numpy (the one copy
  of its constants);
- `files.py`: image extensions, listing, decoding, file prediction, top-k;
- `images.py`: `OnnxPredictor`, the image-classification predictor.
- `text.py`: `TextPredictor` (tokenizers + onnxruntime), the text predictor.
- `audio.py`: `AudioPredictor` (soundfile + onnxruntime), the audio predictor.
"""

from kerastransfer.runtime.audio import AudioPredictor
from kerastransfer.runtime.base import (
    METADATA_JSON_KEYS,
    METADATA_PREFIX,
    create_session,
    decode_metadata,
    encode_metadata,
    read_sidecar,
    sidecar_path,
)
from kerastransfer.runtime.detection import DetectionPredictor
from kerastransfer.runtime.files import (
    IMAGE_EXTENSIONS,
    TF_IMAGE_EXTENSIONS,
    decode_images,
    list_image_files,
    predict_image_files,
    rank_classes,
)
from kerastransfer.runtime.images import OnnxPredictor
from kerastransfer.runtime.preprocess import PREPROCESSING_MODES, preprocess_images
from kerastransfer.runtime.text import TextPredictor

__all__ = [
    "OnnxPredictor",
    "TextPredictor",
    "AudioPredictor",
    "DetectionPredictor",
    "list_image_files",
    "decode_images",
    "preprocess_images",
    "predict_image_files",
    "rank_classes",
    "IMAGE_EXTENSIONS",
    "TF_IMAGE_EXTENSIONS",
    "PREPROCESSING_MODES",
    "METADATA_PREFIX",
    "METADATA_JSON_KEYS",
    "encode_metadata",
    "decode_metadata",
    "sidecar_path",
    "read_sidecar",
    "create_session",
]
