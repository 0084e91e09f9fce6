"""The four arms of the demo's transfer study, on one labelled subset.

* `pretrained` - the product's recipe through `TransferModel`: the shipped
  `digits_cnn` backbone, its BatchNorm statistics re-estimated on the
  unlabelled target images (AdaBN, when `ADAPT`), a linear-probe head fitted
  to convergence on the frozen features (`kerastransfer.training.probe`) and
  self-trained on the unlabelled images' features (`SELF_TRAIN`:
  `kerastransfer.training.self_train`), then fine-tuning with BatchNorm
  frozen (LP-FT).
* `scratch` - the same network from random weights, everything trainable,
  trained for the same number of epochs (and optimizer steps) as the
  pretrained run (`schedule`: 60 steps at k <= 3, 200 at k = 10),
  BatchNorm statistics recomputed before each validation.
* `raw_pixels` - the same (self-trained) linear-probe solver on the raw pixels.
* `random_frozen` - the same (self-trained) solver on a frozen, randomly
  initialized `digits_cnn` (BatchNorm statistics set on the labelled images).

Every choice here (steps, learning rates, AdaBN, probe standardization,
self-training) was made on the labelled pool of the target that is not the
800 held-out images (`target_split`'s `x_unlabelled` with their labels), never
on the held-out images.
"""

from __future__ import annotations

import math
import time

import numpy as np

BACKBONE = "digits_cnn"
ARMS = ("pretrained", "scratch", "raw_pixels", "random_frozen")
STEPS = 200  # optimizer steps (scratch); the pretrained run has as many epochs
MAX_EPOCHS = 60  # k <= 3 (1 step per epoch): 60 steps; bounds Keras's per-epoch cost
FINE_TUNE_LR, SCRATCH_LR = 1e-4, 1e-3
ADAPT = True  # AdaBN on the unlabelled target images before the probe
# Every probe is self-trained on the unlabelled target images
# (`kerastransfer.training.self_train`: two class-balanced rounds of
# pseudo-labels, 10 * k * round per class), the pretrained, raw-pixel and
# random-frozen arms alike. On the labelled pool outside the held-out images
# (5 seeds) it lifted the pretrained probe 0.771 / 0.879 / 0.950 -> 0.853 /
# 0.935 / 0.954 at k = 1 / 3 / 10 (docs/design.md fact 28).
SELF_TRAIN = True
SELF_TRAIN_ROUNDS, SELF_TRAIN_RATIO = 2, 10
# Fine-tuning on the probe's pseudo-labelled images too: 0.850 / 0.920 / 0.957
# vs 0.841 / 0.929 / 0.958 on the labelled images alone, a wash that costs more
# steps at k = 1 / 3, so off. Scratch retrained from random weights on the
# images its first run pseudo-labels: 0.466 / 0.759 / 0.914 -> 0.564 / 0.797 /
# 0.945, so on, for a fair comparison (fact 28).
FINE_TUNE_PSEUDO = False
SCRATCH_PSEUDO = True
# Every arm's probe chooses standardization by the cross-validation that
# chooses C (raw features with one label per class, where it cannot): on the
# labelled pool outside the held-out images, standardizing raw pixels cost
# 0.10 / 0.05 / 0.02 at k = 1 / 3 / 10 and made no difference to the
# pretrained features (docs/design.md fact 25).
STANDARDIZE = "auto"
# The curves' held-out evaluations: six per run (plus the first epochs), in
# batches of 256 rather than of the training batch (10 images at k = 1: 80
# steps per evaluation): 0.60x the scratch arm's time with twelve in training
# batches (docs/design.md fact 32). Inference only: every accuracy is unchanged.
EVALUATIONS = 6
VALIDATION_BATCH = 256


def register_backbone() -> tuple[str, tuple[int, int, int]]:
    """Registers the demo's `digits_cnn`; returns its name and input shape."""
    import kerastransfer as kt
    from kerastransfer.demo.digits import IMAGE_SHAPE
    from kerastransfer.demo.pretrain import FEATURE_DIM, digits_cnn

    kt.register_backbone(
        BACKBONE, lambda shape, w: digits_cnn(tuple(shape), w),
        preprocessing="unit", default_size=IMAGE_SHAPE[0], min_size=IMAGE_SHAPE[0],
        feature_dim=FEATURE_DIM, channels=1,
        blocks=kt.BlockRule((r"^(block\d)_",)), family="demo", overwrite=True,
    )
    return BACKBONE, IMAGE_SHAPE


def schedule(num_labelled: int) -> dict:
    """Batch size, epochs and validation frequency for `num_labelled` images."""
    batch_size = min(32, num_labelled)
    steps_per_epoch = math.ceil(num_labelled / batch_size)
    epochs = min(MAX_EPOCHS, math.ceil(STEPS / steps_per_epoch))
    return {"batch_size": batch_size, "steps_per_epoch": steps_per_epoch,
            "epochs": epochs, "validation_freq": max(1, epochs // EVALUATIONS)}


class CurveRecorder:
    """Held-out accuracy after epochs, with the wall-clock time since `start`.

    A Keras callback factory: `callback()` returns a callback appending
    `(epoch, seconds, val_accuracy)` at the end of each validated epoch, with
    `epoch_offset` added (the pretrained run's probe counts as epoch 1).
    """

    def __init__(self, start: float):
        self.start = start
        self.points: list[tuple[int, float, float]] = []

    def add(self, epoch: int, accuracy: float) -> None:
        self.points.append((epoch, time.perf_counter() - self.start, float(accuracy)))

    def callback(self, epoch_offset: int = 0):
        import keras

        recorder = self

        class _Record(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                value = (logs or {}).get("val_accuracy")
                if value is not None:
                    recorder.add(epoch + 1 + epoch_offset, value)

        return _Record()


def _model_input(images) -> np.ndarray:
    """[0, 1] grayscale -> the [0, 255] values `TransferModel` takes."""
    return (np.asarray(images) * 255.0).astype("float32")


def _accuracy(probabilities, labels) -> float:
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels))


def _probe(features, labels, unlabelled_features, seed: int, self_train: bool):
    """The arms' probe: self-trained on `unlabelled_features` when `self_train`.

    Returns `(probe, self_trained)`; `self_trained` is the `SelfTrainedProbe`
    (its pseudo-labels) or `None`.
    """
    from kerastransfer.training.probe import fit_linear_probe
    from kerastransfer.training.self_train import self_train_probe

    if not self_train:
        return fit_linear_probe(features, labels, num_classes=10, seed=seed,
                                standardize=STANDARDIZE), None
    result = self_train_probe(features, labels, unlabelled_features, num_classes=10,
                              rounds=SELF_TRAIN_ROUNDS, ratio=SELF_TRAIN_RATIO,
                              seed=seed, standardize=STANDARDIZE)
    return result.probe, result


def run_pretrained(split: dict, seed: int, weights: str = "mnist",
                   fine_tune: bool = True, self_train: bool | None = None,
                   fine_tune_pseudo: bool | None = None, curve: bool = True):
    """The product's recipe; returns `(model, history, result)`.

    `self_train` and `fine_tune_pseudo` default to `SELF_TRAIN` and
    `FINE_TUNE_PSEUDO`. With `curve`, the held-out accuracy is recorded during
    training (`result["curve"]`, else `None`): validation changes no weight,
    so the final accuracy is the same either way.
    """
    import keras

    import kerastransfer as kt

    self_train = SELF_TRAIN if self_train is None else self_train
    fine_tune_pseudo = FINE_TUNE_PSEUDO if fine_tune_pseudo is None \
        else fine_tune_pseudo
    name, shape = register_backbone()
    x, y = _model_input(split["x_train"]), split["y_train"]
    x_test, y_test = _model_input(split["x_test"]), split["y_test"]
    unlabelled = _model_input(split["x_unlabelled"])
    keras.utils.set_random_seed(seed)
    model = kt.TransferModel(name, num_classes=10, input_shape=shape,
                             weights=weights, dropout=0.0,
                             class_names=[str(d) for d in range(10)])
    start = time.perf_counter()
    recorder = CurveRecorder(start) if curve else None
    if ADAPT:
        model.adapt(unlabelled)
    extractor = model.feature_extractor()
    features = extractor.predict(x, batch_size=256, verbose=0)
    unlabelled_features = extractor.predict(unlabelled, batch_size=256, verbose=0) \
        if self_train else None
    probe, self_trained = _probe(features, y, unlabelled_features, seed, self_train)
    model.get_layer("logits").set_weights([probe.kernel, probe.bias])
    probe_seconds = time.perf_counter() - start
    probe_accuracy = _accuracy(model.predict(x_test, batch_size=256, verbose=0), y_test)
    if recorder is not None:
        recorder.add(1, probe_accuracy)
    if fine_tune_pseudo and self_trained is not None:
        x = np.concatenate([x, unlabelled[self_trained.pseudo_index]])
        y = np.concatenate([y, self_trained.pseudo_labels])
    plan = schedule(len(x))
    history = None
    if fine_tune and plan["epochs"] > 1:
        model.compile(optimizer=keras.optimizers.Adam(FINE_TUNE_LR))
        history = model.fit(
            x, y, epochs=0, fine_tune_epochs=plan["epochs"] - 1,
            fine_tune_lr=FINE_TUNE_LR, batch_size=plan["batch_size"], verbose=0,
            **_curve_arguments(recorder, (x_test, y_test), plan, epoch_offset=1))
    seconds = time.perf_counter() - start
    accuracy = _accuracy(model.predict(x_test, batch_size=256, verbose=0), y_test)
    return model, history, {
        "accuracy": accuracy, "curve": recorder.points if recorder else None,
        "seconds": seconds, "probe_accuracy": probe_accuracy, "probe_C": probe.C,
        "probe_standardized": probe.standardized,
        "pseudo_labels": 0 if self_trained is None else len(self_trained.pseudo_index),
        "probe_seconds": probe_seconds, "epochs": plan["epochs"],
    }


def _curve_arguments(recorder, validation_data, plan, epoch_offset: int) -> dict:
    """`fit()` arguments that record the held-out curve into `recorder` (none
    when it is `None`)."""
    if recorder is None:
        return {}
    return {"validation_data": validation_data,
            "validation_freq": plan["validation_freq"],
            "validation_batch_size": VALIDATION_BATCH,
            "callbacks": [recorder.callback(epoch_offset)]}


def _train_scratch(x, y, x_test, y_test, seed: int, recorder, epoch_offset: int = 0):
    import keras

    import kerastransfer as kt

    name, shape = register_backbone()
    plan = schedule(len(x))
    keras.utils.set_random_seed(seed)
    model = kt.TransferModel(name, num_classes=10, input_shape=shape, weights=None,
                             dropout=0.0, class_names=[str(d) for d in range(10)])
    model.compile(optimizer=keras.optimizers.Adam(SCRATCH_LR))
    history = model.fit(
        x, y, epochs=plan["epochs"], batch_size=plan["batch_size"], verbose=0,
        **_curve_arguments(recorder, (x_test, y_test), plan, epoch_offset))
    return model, history, plan["epochs"]


def run_scratch(split: dict, seed: int, pseudo: bool | None = None,
                curve: bool = True):
    """The same network from random weights; returns `(model, history, result)`.

    With `pseudo` (default `SCRATCH_PSEUDO`), the trained network then labels
    the unlabelled images, the same class-balanced selection as the probe's
    last self-training round keeps the most confident, and the network is
    trained again from random weights on the labelled plus those images (its
    curve continues the first run's epochs). `curve` as for `run_pretrained`.
    """
    from kerastransfer.training.self_train import select_pseudo_labels

    pseudo = SCRATCH_PSEUDO if pseudo is None else pseudo
    x, y = _model_input(split["x_train"]), split["y_train"]
    x_test, y_test = _model_input(split["x_test"]), split["y_test"]
    start = time.perf_counter()
    recorder = CurveRecorder(start) if curve else None
    model, history, epochs = _train_scratch(x, y, x_test, y_test, seed, recorder)
    first_accuracy = count = None
    if pseudo:
        first_accuracy = _accuracy(model.predict(x_test, batch_size=256, verbose=0),
                                   y_test)
        unlabelled = _model_input(split["x_unlabelled"])
        per_class = round(SELF_TRAIN_RATIO * SELF_TRAIN_ROUNDS * len(y) / 10)
        index, labels = select_pseudo_labels(
            model.predict(unlabelled, batch_size=256, verbose=0), per_class)
        count = len(index)
        model, history, more = _train_scratch(
            np.concatenate([x, unlabelled[index]]), np.concatenate([y, labels]),
            x_test, y_test, seed, recorder, epoch_offset=epochs)
        epochs += more
    seconds = time.perf_counter() - start
    accuracy = _accuracy(model.predict(x_test, batch_size=256, verbose=0), y_test)
    return model, history, {"accuracy": accuracy,
                            "curve": recorder.points if recorder else None,
                            "seconds": seconds, "epochs": epochs,
                            "first_run_accuracy": first_accuracy,
                            "pseudo_labels": count}


def run_raw_pixels(split: dict, seed: int, self_train: bool | None = None) -> dict:
    """The linear-probe solver on the raw pixels (self-trained like the
    pretrained arm's when `self_train`, default `SELF_TRAIN`)."""
    self_train = SELF_TRAIN if self_train is None else self_train
    start = time.perf_counter()

    def flat(images):
        return images.reshape(len(images), -1)

    probe, _ = _probe(flat(split["x_train"]), split["y_train"],
                      flat(split["x_unlabelled"]), seed, self_train)
    return {"accuracy": _accuracy(probe.logits(flat(split["x_test"])),
                                  split["y_test"]),
            "probe_C": probe.C, "seconds": time.perf_counter() - start}


def run_random_frozen(split: dict, seed: int, self_train: bool | None = None) -> dict:
    """The linear-probe solver on a frozen random `digits_cnn` (self-trained
    like the pretrained arm's when `self_train`, default `SELF_TRAIN`)."""
    import keras

    from kerastransfer.demo.pretrain import digits_cnn
    from kerastransfer.training.batchnorm import recalibrate_batchnorm

    self_train = SELF_TRAIN if self_train is None else self_train
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    backbone = digits_cnn(weights=None)
    recalibrate_batchnorm(backbone, split["x_train"], layers="all")
    features = backbone.predict(split["x_train"], batch_size=256, verbose=0)
    unlabelled = backbone.predict(split["x_unlabelled"], batch_size=256, verbose=0) \
        if self_train else None
    probe, _ = _probe(features, split["y_train"], unlabelled, seed, self_train)
    test = backbone.predict(split["x_test"], batch_size=256, verbose=0)
    return {"accuracy": _accuracy(probe.logits(test), split["y_test"]),
            "probe_C": probe.C, "seconds": time.perf_counter() - start}


def epochs_to_fraction(curve, fraction: float = 0.9) -> int | None:
    """First epoch whose accuracy reaches `fraction` of the curve's last value."""
    if not curve:
        return None
    goal = fraction * curve[-1][2]
    return next(epoch for epoch, _, accuracy in curve if accuracy >= goal)
