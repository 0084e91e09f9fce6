"""`python -m kerastransfer.demo`: the main job on the embedded offline default.

Until the full demo lands this runs the smallest end-to-end job: build a
TransferModel, fit both phases on a few synthetic images, save and reload it.
"""

import argparse
import logging
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="demo_output")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import numpy as np

    import kerastransfer as kt

    rng = np.random.default_rng(0)
    y = np.arange(32) % 2
    x = rng.normal(80 + 100 * y[:, None, None, None], 20, (32, 32, 32, 3))
    x = np.clip(x, 0, 255).astype("float32")
    model = kt.TransferModel("mobilenet_v3_small", num_classes=2, weights=None,
                             input_shape=(32, 32, 3), class_names=["dark", "light"])
    history = model.fit(x, y, epochs=2, fine_tune_epochs=2, verbose=0)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "model.keras")
    model.save(path)
    again = kt.load_model(path)
    same = float(np.abs(again.predict(x, verbose=0) - model.predict(x, verbose=0)).max())
    logging.info("Trained %d epochs, final accuracy %.2f; saved %s (reload max "
                 "|diff| %.1e)", len(history.epoch), history.history["accuracy"][-1],
                 path, same)


if __name__ == "__main__":
    main()
