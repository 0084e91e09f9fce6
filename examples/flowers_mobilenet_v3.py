"""Fine-tunes MobileNetV3-Large on TensorFlow's flower_photos (5 classes).

The data set is the one TensorFlow's image-classification and transfer-learning
tutorials use (3,670 photos of daisies, dandelions, roses, sunflowers, tulips).
Protocol: a frozen ImageNet MobileNetV3-Large at 224 px with a new head, then
the top two natural blocks unfrozen with layer-wise learning-rate decay, BatchNorm
kept in inference mode; then ONNX export (validated) and a TensorFlow-free check.
TensorFlow's tutorials report about 90% validation accuracy for MobileNet-class
ImageNet backbones on this data; the script prints what you get.

Needs the network (ImageNet weights, the 220 MB archive; cached under ~/.keras).

    python examples/flowers_mobilenet_v3.py            # the real run
    python examples/flowers_mobilenet_v3.py --smoke    # offline, seconds, CI

Not verified on this project's CPU-only, offline machines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

ARCHIVE = ("https://storage.googleapis.com/download.tensorflow.org/example_images/"
           "flower_photos.tgz")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="synthetic data, weights=None, a few steps (offline)")
    parser.add_argument("--out", default="examples_output/flowers")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import kerastransfer as kt
    from kerastransfer.data import load_image_folder

    if args.smoke:
        folder = common.smoke_folder(args.out, ("daisy", "rose", "tulip"), size=48)
        weights, size, epochs, fine_tune_epochs, batch_size = None, 48, 1, 1, 8
    else:
        import keras

        archive = keras.utils.get_file("flower_photos.tgz", ARCHIVE, extract=True)
        folder = os.path.join(archive, "flower_photos")
        weights, size = "imagenet", 224
        epochs, fine_tune_epochs, batch_size = (args.epochs, args.fine_tune_epochs,
                                                32)
    data = load_image_folder(folder, image_size=(size, size), batch_size=batch_size,
                             validation_split=0.2, seed=123)
    model = kt.TransferModel("mobilenet_v3_large", num_classes=data.num_classes,
                             class_names=data.class_names, weights=weights,
                             input_shape=(size, size, 3), dropout=0.2)
    if args.smoke:
        model.pretrained = True  # exercise both phases on random weights
    history = model.fit(
        data.train, validation_data=data.validation,
        epochs=epochs, learning_rate=1e-3,
        fine_tune_epochs=fine_tune_epochs, fine_tune_lr=1e-4,
        unfreeze="blocks:2", lr_decay=0.5, augmentation="light",
        verbose=0 if args.smoke else "auto",
    )
    result = {"val_accuracy": history.history["val_accuracy"][-1],
              "skipped_files": len(data.skipped)}
    logging.info("Validation accuracy after fine-tuning: %.4f", result["val_accuracy"])
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.keras"))
    result.update(common.export_and_check(model, data, args.out))
    return result


if __name__ == "__main__":
    main()
