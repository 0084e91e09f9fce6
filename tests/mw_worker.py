"""One worker of a two-process MultiWorkerMirroredStrategy fit (run as a script).

    python tests/mw_worker.py TASK_INDEX PORT0,PORT1 OUT_DIR [--checkpoint]

Sets TF_CONFIG for a two-worker cluster on 127.0.0.1 before TensorFlow starts,
trains a tiny TransferModel for one frozen and one fine-tuning epoch under the
strategy, and writes OUT_DIR/worker<i>.npz (every model variable) and
OUT_DIR/worker<i>.json (phases, losses, replicas).
"""

import json
import os
import sys

task, ports, out_dir = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
use_checkpoint = "--checkpoint" in sys.argv[4:]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
    "task": {"type": "worker", "index": task},
})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resume_worker  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
keras.utils.set_random_seed(3)  # same initial weights on both workers

import kerastransfer as kt  # noqa: E402

x, y = resume_worker.data(n_per_class=16)
with strategy.scope():
    backbone = resume_worker.small_backbone()
model = kt.TransferModel(backbone, num_classes=2, strategy=strategy, dropout=0.0)
history = model.fit(
    x, y, epochs=1, fine_tune_epochs=1, batch_size=8, learning_rate=3e-3,
    train_bn=True, verbose=0,
    checkpoint_dir=os.path.join(out_dir, f"ckpt{task}") if use_checkpoint else None,
)
np.savez(os.path.join(out_dir, f"worker{task}.npz"),
         *[np.asarray(v.numpy()) for v in model.variables])
with open(os.path.join(out_dir, f"worker{task}.json"), "w") as f:
    json.dump({"phases": [p["name"] for p in history.phases],
               "loss": history.history["loss"],
               "replicas": strategy.num_replicas_in_sync,
               "iterations": int(model.optimizer.iterations.numpy())}, f)
