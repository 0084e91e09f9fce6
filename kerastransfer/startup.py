"""Importing TensorFlow without its native start-up lines, for entry points.

While TensorFlow's shared libraries load, its C++ side writes straight to file
descriptor 2, some of it before `TF_CPP_MIN_LOG_LEVEL` is read: absl's "WARNING:
All log messages before absl::InitializeLog() is called are written to STDERR",
cudart_stub's "Could not find cuda drivers" and cpu_feature_guard's
CPU-instructions notice. Python's `sys.stderr` cannot catch them, so
`import_tensorflow_quietly` points descriptor 2 at /dev/null for the duration of
the import only. The command line (`kerastransfer ...`) and the demo
(`python -m kerastransfer.demo`) call it before anything imports TensorFlow; a
library import never does (a user's program keeps its own stderr).
"""

from __future__ import annotations

import os
import sys

__all__ = ["import_tensorflow_quietly"]


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow (once) with its native start-up lines silenced.

    Descriptor 2 is restored right after the import; an import error is raised
    after the restore, so it is still shown. Does nothing when TensorFlow is
    already imported; imports plainly when descriptor 2 cannot be duplicated.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
        saved_fd = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2: import plainly
        import tensorflow  # noqa: F401
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
