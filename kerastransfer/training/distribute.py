"""Helpers for `tf.distribute` training (several GPUs, several machines).

`TransferModel(strategy=...)` builds the model under the strategy's scope and
`fit()` freezes/unfreezes and recompiles every phase inside it (training.py).
What Keras 3.15 leaves out, and this module adds:

* `SyncNonTrainableVariables`: under `MultiWorkerMirroredStrategy` each worker
  updates its BatchNormalization moving statistics from its own data shard, so
  the workers' moving mean/variance drift apart (measured: up to 133 on a tiny
  model after two epochs) while the trainable weights stay identical. The
  callback all-reduces (averages) every non-trainable float variable across all
  replicas at the end of each epoch, so every worker ends with the same model.
"""

from __future__ import annotations

import keras

__all__ = ["num_replicas", "is_multi_worker", "SyncNonTrainableVariables"]


def num_replicas(strategy) -> int:
    """Replicas in sync for `strategy` (1 for None)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def is_multi_worker(strategy) -> bool:
    """Whether `strategy` spans several workers (MultiWorkerMirroredStrategy)."""
    check = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode",
                    None)
    return bool(check and check())


class SyncNonTrainableVariables(keras.callbacks.Callback):
    """Averages non-trainable float variables (BN statistics) across replicas.

    Args:
        strategy: the `tf.distribute.Strategy` the model was built under.
    """

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy
        self._fn = None

    def _variables(self):
        return [v for v in self.model.non_trainable_variables
                if "float" in str(v.dtype)]

    def sync(self) -> None:
        """All-reduces the variables now (call in cross-replica context)."""
        import tensorflow as tf

        variables = self._variables()
        if not variables:
            return
        tf_vars = [v.value for v in variables]

        def replica_fn():
            context = tf.distribute.get_replica_context()
            return context.all_reduce(
                tf.distribute.ReduceOp.MEAN, [tf.identity(v) for v in tf_vars])

        if self._fn is None:
            self._fn = tf.function(lambda: self.strategy.run(replica_fn))
        means = self.strategy.experimental_local_results(self._fn())[0]
        for variable, mean in zip(tf_vars, means, strict=True):
            variable.assign(mean)

    def on_epoch_end(self, epoch, logs=None):
        self.sync()
