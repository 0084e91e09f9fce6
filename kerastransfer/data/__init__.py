"""Data pipelines for every task: files and arrays in, `tf.data` batches out.

Modules, one role each (the imports only go down this list):

* `checks`: image-file checks and the argument/array/label checks.
* `split`: the seeded stratified split, class counts, balanced class weights.
* `pipeline`: `tf.data` pipelines (parallel decode, cache, shuffle, prefetch).
* `augment`: augmentation presets and `augment_dataset`.
* `records`: image lists (CSV file, list of dicts, DataFrame) -> paths, labels.
* `images`: image sources -> `ImageData` (folders, CSV/record lists, arrays,
  datasets).
* `inputs`: what training consumes (`prepare_fit_inputs`, `images_only`).
* `synthetic`: small synthetic image folders for tests and smoke runs.
* `medical`: `read_image` for DICOM, NIfTI, 16-bit PNG and TIFF (from
  `kerastransfer.runtime.medical`); `groups`: patient-safe splits.

Importing this package does not import TensorFlow or Keras (they are imported
inside the functions that need them).
"""

from kerastransfer.data.augment import (
    AUGMENTATION_PRESETS,
    augment_dataset,
    augmentation_layers,
)
from kerastransfer.data.checks import check_image_file, scan_images
from kerastransfer.data.images import (
    ImageData,
    from_arrays,
    from_dataset,
    load_image_folder,
    load_image_list,
)
from kerastransfer.data.inputs import images_only, prepare_fit_inputs
from kerastransfer.data.medical import read_image
from kerastransfer.data.split import balanced_class_weight, dataset_labels
from kerastransfer.runtime.files import IMAGE_EXTENSIONS, TF_IMAGE_EXTENSIONS

__all__ = [
    "ImageData",
    "IMAGE_EXTENSIONS",
    "TF_IMAGE_EXTENSIONS",
    "AUGMENTATION_PRESETS",
    "load_image_folder",
    "load_image_list",
    "from_arrays",
    "from_dataset",
    "images_only",
    "balanced_class_weight",
    "dataset_labels",
    "augmentation_layers",
    "augment_dataset",
    "scan_images",
    "check_image_file",
    "prepare_fit_inputs",
    "read_image",
]
