"""A seeded, deterministic two-phase fit with a checkpoint_dir (run as a script).

Used by tests/test_resume.py: it can SIGKILL itself in the middle of an epoch
(env `KT_KILL_AT_EPOCH=<global epoch>`, killed after batch 2 of that epoch), and
it writes what it did so the parent can check the resume:

    python tests/resume_worker.py CHECKPOINT_DIR OUT_PREFIX

* `OUT_PREFIX.epochs` - one line per epoch begun in this process (appended);
* `OUT_PREFIX.json`   - the returned history and phases (on success);
* `OUT_PREFIX.npz`    - every model variable after training (on success).
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

EPOCHS, FINE_TUNE_EPOCHS = 2, 3


def small_backbone():
    """A tiny CNN with BatchNorm standing in for a pretrained backbone."""
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, x, name="tiny_backbone")


def data(n_per_class=24, size=24, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(2):
        base = np.zeros((size, size, 3), dtype="float32")
        base[..., label] = 200.0
        images.append(np.clip(base + rng.normal(0, 40, (n_per_class, size, size, 3)),
                              0, 255))
        labels.append(np.full(n_per_class, label))
    return np.concatenate(images).astype("float32"), np.concatenate(labels)


class Recorder(keras.callbacks.Callback):
    def __init__(self, path, kill_at):
        super().__init__()
        self.path, self.kill_at, self.epoch = path, kill_at, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        with open(self.path, "a") as f:
            f.write(f"{epoch}\n")

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.kill_at and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)


def main(checkpoint_dir, prefix):
    keras.utils.set_random_seed(7)
    tf.config.experimental.enable_op_determinism()
    from kerastransfer import TransferModel

    kill_at = int(os.environ.get("KT_KILL_AT_EPOCH", "-1"))
    x, y = data()
    model = TransferModel(small_backbone(), num_classes=2, dropout=0.3,
                          class_names=["a", "b"])
    history = model.fit(
        x, y, epochs=EPOCHS, fine_tune_epochs=FINE_TUNE_EPOCHS, batch_size=8,
        learning_rate=3e-3, fine_tune_lr=1e-3, train_bn=True, verbose=0,
        checkpoint_dir=checkpoint_dir,
        callbacks=[Recorder(prefix + ".epochs", kill_at)],
    )
    np.savez(prefix + ".npz", *[v.numpy() for v in model.variables])
    with open(prefix + ".json", "w") as f:
        json.dump({"history": history.history, "epoch": history.epoch,
                   "phases": history.phases,
                   "iterations": int(model.optimizer.iterations.numpy())}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
