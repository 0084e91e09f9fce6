"""Real per-group learning rates (discriminative fine-tuning).

Scaling gradients does not give a layer group its own learning rate under Adam
(Adam is invariant to gradient scale), so `GroupedOptimizer` keeps one optimizer
per variable group, each with its own learning rate and its own slot variables,
and dispatches each gradient to its group's optimizer. It is a
`keras.optimizers.Optimizer`, so Keras's own `train_step`, loss scaling for
`mixed_float16` (`LossScaleOptimizer` wraps it), `tf.distribute` and `.keras`
saving all work unchanged. Its design follows Keras's `LossScaleOptimizer`, which
wraps an inner optimizer the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

__all__ = ["GroupedOptimizer", "ScaledSchedule", "scaled_learning_rate"]


@keras.saving.register_keras_serializable(package="kerastransfer")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule multiplied by a constant factor.

    Args:
        schedule: the `LearningRateSchedule` to scale.
        factor: the multiplier.
    """

    def __init__(self, schedule, factor: float):
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        self.schedule = schedule
        self.factor = float(factor)

    def __call__(self, step):
        return self.schedule(step) * self.factor

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "factor": self.factor,
        }


def base_learning_rate(optimizer: keras.optimizers.Optimizer):
    """The optimizer's learning rate as configured: a float (float32 noise
    rounded away: 1e-3, not 0.0010000000474974513) or the schedule object."""
    rate = optimizer.get_config()["learning_rate"]
    if isinstance(rate, dict):
        return keras.saving.deserialize_keras_object(rate)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return rate
    return float(f"{float(rate):.7g}")


def scaled_learning_rate(learning_rate, factor: float):
    """Returns `learning_rate * factor` for a float or a schedule."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return learning_rate if factor == 1.0 else ScaledSchedule(learning_rate, factor)
    return float(learning_rate) * factor


def _clone_optimizer(optimizer: keras.optimizers.Optimizer, learning_rate, name):
    config = optimizer.get_config()
    config["learning_rate"] = keras.saving.serialize_keras_object(learning_rate)
    config["name"] = name
    return optimizer.__class__.from_config(config)


@keras.saving.register_keras_serializable(package="kerastransfer")
class GroupedOptimizer(keras.optimizers.Optimizer):
    """Trains each group of variables with its own optimizer and learning rate.

    Args:
        optimizer: the template optimizer (its class and hyper-parameters are
            used for every group; its learning rate is the base rate).
        multipliers: one learning-rate multiplier per group.
        variable_groups: one list of `keras.Variable.path`s per group. A variable in
            no group (or in a later-added layer) falls in the first group.
        name: the optimizer's name. Defaults to `"grouped_optimizer"`.

    Example:

    >>> import keras
    >>> opt = GroupedOptimizer(keras.optimizers.Adam(1e-3), [1.0, 0.1],
    ...                        [["head/kernel"], ["backbone/kernel"]])
    >>> [float(o.learning_rate) for o in opt.optimizers]
    [0.001, 0.0001]
    """

    def __init__(
        self,
        optimizer,
        multipliers: Sequence[float],
        variable_groups: Sequence[Sequence[str]],
        name: str | None = None,
        **kwargs,
    ):
        if isinstance(optimizer, dict):
            optimizer = keras.saving.deserialize_keras_object(optimizer)
        if len(multipliers) != len(variable_groups) or not multipliers:
            raise ValueError(
                "GroupedOptimizer needs one multiplier per variable group. "
                f"Received: {len(multipliers)} multipliers and "
                f"{len(variable_groups)} groups"
            )
        super().__init__(learning_rate=0.0, name=name or "grouped_optimizer")
        self.base_optimizer = optimizer
        self.multipliers = [float(m) for m in multipliers]
        self.variable_groups = [list(g) for g in variable_groups]
        base_rate = base_learning_rate(optimizer)
        self.optimizers = [
            _clone_optimizer(optimizer, scaled_learning_rate(base_rate, m),
                             f"group_{i}")
            for i, m in enumerate(self.multipliers)
        ]
        self._group_of_path = {
            path: i for i, group in enumerate(self.variable_groups) for path in group
        }

    def _split(self, values, variables):
        buckets = [([], []) for _ in self.optimizers]
        for value, variable in zip(values, variables, strict=True):
            group = self._group_of_path.get(variable.path, 0)
            buckets[group][0].append(value)
            buckets[group][1].append(variable)
        return buckets

    def build(self, var_list):
        for optimizer, (_, variables) in zip(
            self.optimizers, self._split(var_list, var_list), strict=True
        ):
            optimizer.build(variables)
        super().build(var_list)

    @property
    def variables(self):
        variables = list(self._variables)
        for optimizer in self.optimizers:
            variables.extend(optimizer.variables)
        return variables

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        for optimizer, (group_grads, group_vars) in zip(
            self.optimizers, self._split(grads, trainable_variables), strict=True
        ):
            if group_vars:
                optimizer.apply(group_grads, group_vars)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        raise NotImplementedError(
            "GroupedOptimizer supports the TensorFlow backend's stateful training."
        )

    @property
    def iterations(self):
        return self.optimizers[0].iterations

    @property
    def learning_rate(self):
        """The base (head) learning rate."""
        return self.optimizers[0].learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        # Callbacks such as ReduceLROnPlateau set one rate: keep the ratios.
        if not hasattr(self, "optimizers"):  # during the base class's __init__
            self._learning_rate = self._build_learning_rate(learning_rate)
            return
        for optimizer, multiplier in zip(self.optimizers, self.multipliers,
                                         strict=True):
            optimizer.learning_rate = scaled_learning_rate(learning_rate, multiplier)

    def finalize_variable_values(self, var_list):
        for optimizer, (_, variables) in zip(
            self.optimizers, self._split(var_list, var_list), strict=True
        ):
            optimizer.finalize_variable_values(variables)

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.base_optimizer),
            "multipliers": self.multipliers,
            "variable_groups": self.variable_groups,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)
