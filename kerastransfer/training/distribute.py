"""Helpers for `tf.distribute` training (several GPUs, several machines).

`TransferModel(strategy=...)` builds the model under the strategy's scope and
`fit()` freezes/unfreezes and recompiles every phase inside it (loop.py).
What Keras 3.15 leaves out, and this module adds:

* `local_first_batch` and `reducible_logs`: two workarounds for Keras 3.15's
  TensorFlow trainer under `MultiWorkerMirroredStrategy`, called by
  `TransferTask._maybe_symbolic_build` / `train_step` / `test_step`
  (kerastransfer/tasks/base.py). Keras reduces the first distributed batch with
  `strategy.reduce("MEAN", ...)` ("Attempt to convert a value (PerReplica...")
  and reduces scalar step logs along axis 0. `_maybe_symbolic_build` is private
  Keras API: tests/test_distribute.py checks it still exists with this signature.

* `SyncNonTrainableVariables`: under `MultiWorkerMirroredStrategy` each worker
  updates its BatchNormalization moving statistics from its own data shard, so
  the workers' moving mean/variance drift apart (measured: up to 133 on a tiny
  model after two epochs) while the trainable weights stay identical. The
  callback all-reduces (averages) every non-trainable float variable across all
  replicas at the end of each epoch, so every worker ends with the same model.
"""

from __future__ import annotations

import keras

__all__ = ["num_replicas", "is_multi_worker", "SyncNonTrainableVariables",
           "local_first_batch", "reducible_logs"]


def num_replicas(strategy) -> int:
    """Replicas in sync for `strategy` (1 for None)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def is_multi_worker(strategy) -> bool:
    """Whether `strategy` spans several workers (MultiWorkerMirroredStrategy)."""
    check = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode",
                    None)
    return bool(check and check())


def _model_multi_worker(model) -> bool:
    return is_multi_worker(getattr(model, "distribute_strategy", None))


def local_first_batch(model, iterator, data_batch):
    """Replaces Keras's first-batch iterator by one local replica's batch.

    Only the batch's shapes are needed to build the model symbolically, and a
    local replica's batch has them. No-op unless the model is multi-worker.

    Returns:
        `(iterator, data_batch)` to pass on to Keras.
    """
    if iterator is None or data_batch is not None or not _model_multi_worker(model):
        return iterator, data_batch
    import tensorflow as tf

    strategy = model.distribute_strategy
    for _, _, it in iterator:
        data_batch = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
        break
    return None, data_batch


def reducible_logs(model, logs: dict) -> dict:
    """Gives scalar step logs a length-1 axis under multi-worker training, which
    Keras's `reduce("MEAN", v, axis=0)` turns back into a scalar."""
    if not _model_multi_worker(model):
        return logs
    import tensorflow as tf

    return {k: tf.reshape(v, [1]) if getattr(v, "shape", None) is not None
            and len(v.shape) == 0 else v for k, v in logs.items()}


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
