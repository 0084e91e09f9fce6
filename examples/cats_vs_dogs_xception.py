"""Reproduces the Keras transfer-learning guide: cats vs dogs with Xception.

The guide ("Transfer learning & fine-tuning", keras.io/guides/transfer_learning)
trains a new head on a frozen ImageNet Xception at 150x150 with flip/rotation
augmentation (about 97% validation accuracy), then fine-tunes the whole model at
learning rate 1e-5 with BatchNorm kept in inference mode (about 98.5%). Here the
same protocol is a few lines of kerastransfer, and ends by exporting to ONNX and
checking the TensorFlow-free predictor against Keras.

Needs the network (ImageNet weights and the ~800 MB Microsoft cats-vs-dogs
archive, cached by Keras under ~/.keras) and, for reasonable time, a GPU.
The archive holds a few corrupt JPEGs; the loader skips and reports them.

    python examples/cats_vs_dogs_xception.py            # the real run
    python examples/cats_vs_dogs_xception.py --smoke    # offline, seconds, CI

Not verified on this project's CPU-only, offline machines: the figures above are
the guide's, not ours.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

ARCHIVE = ("https://download.microsoft.com/download/3/E/1/"
           "3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="synthetic data, weights=None, a few steps (offline)")
    parser.add_argument("--out", default="examples_output/cats_vs_dogs")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import kerastransfer as kt
    from kerastransfer.data import load_image_folder

    if args.smoke:
        folder, weights, size = common.smoke_folder(args.out, size=80), None, 72
        epochs, fine_tune_epochs, batch_size = 1, 1, 8
    else:
        import keras

        archive = keras.utils.get_file("kagglecatsanddogs_5340.zip", ARCHIVE,
                                       extract=True)
        folder = os.path.join(archive, "PetImages")
        weights, size = "imagenet", 150
        epochs, fine_tune_epochs, batch_size = (args.epochs, args.fine_tune_epochs,
                                                64)
    data = load_image_folder(folder, image_size=(size, size), batch_size=batch_size,
                             validation_split=0.2, seed=1337)
    model = kt.TransferModel("xception", num_classes=data.num_classes,
                             class_names=data.class_names, weights=weights,
                             input_shape=(size, size, 3), dropout=0.2)
    if args.smoke:
        model.pretrained = True  # exercise both phases on random weights
    history = model.fit(
        data.train, validation_data=data.validation,
        epochs=epochs,                          # head only, backbone frozen
        fine_tune_epochs=fine_tune_epochs,      # everything, BatchNorm frozen
        fine_tune_lr=1e-5, unfreeze="all", augmentation="light",
        verbose=0 if args.smoke else "auto",
    )
    frozen_end = history.phases[0]["end_epoch"] - 1
    result = {
        "val_accuracy_frozen": history.history["val_accuracy"][frozen_end],
        "val_accuracy_fine_tuned": history.history["val_accuracy"][-1],
        "skipped_files": len(data.skipped),
    }
    logging.info("Validation accuracy: frozen %.4f (guide: ~0.97), fine-tuned %.4f "
                 "(guide: ~0.985)", result["val_accuracy_frozen"],
                 result["val_accuracy_fine_tuned"])
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.keras"))
    result.update(common.export_and_check(model, data, args.out))
    return result


if __name__ == "__main__":
    main()
