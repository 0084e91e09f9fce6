"""Data pipelines for every task: files and arrays in, `tf.data` batches out."""

from kerastransfer.data.images import *  # noqa: F401,F403
from kerastransfer.data.images import __all__ as _images_all
from kerastransfer.data.images import prepare_fit_inputs  # noqa: F401

__all__ = list(_images_all)
