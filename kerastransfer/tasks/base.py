"""`TransferTask`: the state and training behaviour every task shares.

A task is a Keras functional model built by a subclass (as KerasHub builds its
tasks): `backbone -> task head`. The base class owns what is the same for every
task — the backbone and its registry spec, whether it is pretrained, which part of
it trains (the phase state), the user's compile arguments, the phased `fit()`,
the LR finder, the `.keras` round trip and the distribution strategy — and the
training core (`kerastransfer.training`) works through its methods only.

A task subclass builds its graph in `__init__` (with
`kerastransfer.tasks.backbone.resolve_backbone`), calls
`super().__init__(inputs=..., outputs=...)`, then `self._init_task(...)`, and
declares its contract:

* `head_layers` and `_feature_tensor`: the layers after the backbone, and the
  tensor between the frozen part and the head (what feature caching stores);
* `default_loss()` and `default_metrics()`;
* `_check_labels(y)`: clear errors for labels the head cannot learn from;
* `export_contract()`: what the exported output means, written into the ONNX
  metadata so the runtime predictor knows how to post-process it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import keras

from kerastransfer.backbones.registry import get_backbone
from kerastransfer.tasks.backbone import BackboneParts
from kerastransfer.tasks.compiling import CompileArguments, PhaseCompiling

__all__ = ["TransferTask"]

class TransferTask(PhaseCompiling, keras.Model):
    """Base class of every kerastransfer task (see the module docstring).

    Subclasses are built with `super().__init__(inputs=..., outputs=...)` and then
    `self._init_task(...)`; they are never instantiated directly.
    """

    # --- Construction -------------------------------------------------------
    # Keras's Functional silently accepts unknown keyword arguments: a typo, or
    # an argument of an older version, would be ignored without a word.
    _KERAS_KWARGS = ("trainable", "dtype")

    def __init__(self, *args, **kwargs):
        unknown = sorted(set(kwargs) - {"inputs", "outputs", "name",
                                        *self._KERAS_KWARGS})
        if unknown:
            hint = (" To train a keras.Model backbone from scratch, pass "
                    "weights=None." if "pretrained" in unknown else "")
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword arguments "
                f"{unknown}.{hint} Received: {', '.join(unknown)}")
        super().__init__(*args, **kwargs)

    def _init_task(self, parts: BackboneParts, *, head_layers, feature_tensor,
                   strategy=None, mixed_precision=None) -> None:
        self.backbone = parts.model
        self.backbone_spec = parts.spec
        self.backbone_name = parts.name
        self.pretrained = bool(parts.pretrained)
        self.input_dtype_name = parts.input_dtype
        self.head_layers = list(head_layers)
        self.strategy = strategy
        self.mixed_precision = mixed_precision
        self._feature_tensor = feature_tensor
        self._compile_holder = CompileArguments()
        self._phase_state = {"unfreeze": "all", "train_bn": True}

    # --- The task contract (subclasses override) ----------------------------
    def default_loss(self):
        """The task's loss when `compile()` is given none."""
        raise NotImplementedError

    def default_metrics(self) -> list:
        """The task's metrics when `compile()` is given none."""
        raise NotImplementedError

    def export_contract(self) -> dict:
        """What the exported model's output means (for the ONNX metadata)."""
        raise NotImplementedError

    def _check_labels(self, y) -> None:
        """Raises `DataError` for numpy labels the head cannot learn from."""

    def _auto_head(self, x, augmentation=None) -> str:
        """What `fit(head="auto")` uses for frozen phases on training data `x`
        (before any conversion): `"epochs"`; image classifiers override it."""
        return "epochs"

    def _checkpoint_identity(self) -> dict:
        """What a checkpoint must match to be resumed into this model."""
        return {"backbone": str(self.backbone_name), "task": type(self).__name__,
                "num_variables": len(self.variables)}

    # --- Introspection ------------------------------------------------------
    @property
    def block_rule(self):
        """The backbone's `BlockRule` (natural unfreezing blocks), or None."""
        return self.backbone_spec.blocks if self.backbone_spec else None

    @property
    def phase_state(self) -> dict:
        """What is trainable: `{"unfreeze": <rule>, "train_bn": bool}`."""
        return dict(self._phase_state)

    def feature_extractor(self) -> keras.Model:
        """A model from the same input to the head's input features (shares
        weights with this model): what feature caching computes once."""
        return keras.Model(self.input, self._feature_tensor,
                           name=f"{self.name}_features")

    def head_model(self) -> keras.Model:
        """A model from `feature_extractor()`'s output to the predictions that
        shares the head's layers (trained alone on cached features)."""
        inputs = keras.Input(shape=tuple(self._feature_tensor.shape[1:]),
                             name="features")
        layers = list(self.head_layers)
        names = [layer.name for layer in layers]
        if "pool" in names:  # the pool runs before the cache
            layers = layers[names.index("pool") + 1:]
        x = inputs
        for layer in layers:
            x = layer(x)
        return keras.Model(inputs, x, name=f"{self.name}_head")

    # --- Phases -------------------------------------------------------------
    def freeze_backbone(self) -> None:
        """Freezes the backbone (BatchNorm in inference mode). Recompile after."""
        from kerastransfer.training import phases

        phases.freeze_layers(self)
        self._phase_state = {"unfreeze": "none", "train_bn": False}

    def unfreeze(self, rule: Any = "all", *, train_bn: bool = False) -> list[str]:
        """Unfreezes part of the backbone; the rest stays frozen.

        Args:
            rule: `"all"`, `"top:N"`, `"from:<layer>"`, `"blocks:N"`,
                `"fraction:F"` or an `Unfreeze`. Defaults to `"all"`.
            train_bn: also train the unfrozen BatchNorm layers. Defaults to
                `False` (inference mode: what small data sets need).

        Returns:
            The names of the backbone layers now trainable.
        """
        from kerastransfer.training import phases

        rule = phases.Unfreeze.parse(rule)
        names = phases.unfreeze_layers(self, rule, train_bn=train_bn)
        self._phase_state = {"unfreeze": rule.to_string(), "train_bn": bool(train_bn)}
        return names

    def set_phase_state(self, state: dict) -> None:
        """Restores a `phase_state` (as saved in the config or a checkpoint)."""
        rule = state.get("unfreeze", "all")
        if rule == "none":
            self.freeze_backbone()
        else:
            self.unfreeze(rule, train_bn=bool(state.get("train_bn", False)))

    def trainable_summary(self) -> str:
        """A readable account of which blocks train, and BatchNorm modes."""
        from kerastransfer.training import phases

        return phases.trainable_summary(self)

    def adapt(self, images, *, max_samples: int = 1024, batch_size: int = 64) -> int:
        """Adapts the backbone's BatchNorm statistics to unlabelled images (AdaBN).

        Every backbone BatchNorm layer gets the statistics of its inputs on
        `images` (Li et al., 2016); no trainable weight changes. Args and return
        value as `kerastransfer.training.batchnorm.recalibrate_batchnorm`
        (`images`: an array, a `tf.data.Dataset` or an `ImageData`).
        """
        from kerastransfer.training.batchnorm import recalibrate_batchnorm

        return recalibrate_batchnorm(self, images, layers="backbone",
                                     max_samples=max_samples, batch_size=batch_size)

    # --- Training -----------------------------------------------------------
    def fit(
        self,
        x=None,
        y=None,
        *,
        epochs: int = 1,
        fine_tune_epochs: int = 0,
        learning_rate: float | None = None,
        fine_tune_lr: float | None = None,
        unfreeze: Any = "all",
        train_bn: bool = False,
        lr_decay: float | None = None,
        plan: Any = None,
        batch_size: int | None = None,
        validation_data=None,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        verbose: Any = "auto",
        checkpoint_dir: str | None = None,
        cache_features: bool | str = False,
        report_dir: str | None = None,
        augmentation: Any = None,
        precise_bn: bool = True,
        head: str = "auto",
        unlabelled=None,
        **kwargs,
    ):
        """Trains in phases: the head on a frozen backbone, then fine-tuning.

        Phase 1 trains for `epochs` with the backbone frozen. Phase 2 (when
        `fine_tune_epochs > 0`) unfreezes the backbone as `unfreeze` says and
        recompiles with `fine_tune_lr`, keeping the loss, metrics and optimizer
        type. A `PhasePlan` (`plan=`) allows any number of phases (gradual
        unfreezing). A model built with `weights=None` has nothing to transfer: it
        trains in one phase, everything trainable, for `epochs + fine_tune_epochs`.

        Args:
            x, y: training data, as for `keras.Model.fit` (arrays, a
                `tf.data.Dataset` of `(inputs, labels)`, ...), or an `ImageData`
                from `kerastransfer.data` (its validation split is used unless
                `validation_data` is given), in the form the task takes (images:
                RGB float values in [0, 255]).
            epochs: epochs of the frozen phase (when `head` solves it with
                the linear probe, as `"auto"` does for small image data, the
                phase is one epoch whatever this says). Defaults to `1`.
            fine_tune_epochs: epochs of the fine-tuning phase. Defaults to `0`.
            learning_rate: learning rate of the frozen phase. Defaults to the
                compiled optimizer's (1e-3 for the default Adam).
            fine_tune_lr: learning rate of fine-tuning. Defaults to a tenth of
                `learning_rate`.
            unfreeze: what fine-tuning unfreezes (`"all"`, `"top:N"`,
                `"from:<layer>"`, `"blocks:N"`, `"fraction:F"`). Defaults to
                `"all"`.
            train_bn: let BatchNorm train during fine-tuning. Defaults to `False`.
            lr_decay: layer-wise learning-rate decay per backbone block during
                fine-tuning (discriminative rates). Defaults to `None`.
            plan: a `PhasePlan` (or list of `Phase`) used instead of the
                arguments above. Defaults to `None`.
            batch_size: as for `keras.Model.fit`. Defaults to `None` (32).
            validation_data: as for `keras.Model.fit`. Defaults to `None`.
            callbacks: Keras callbacks, shared by all phases. Defaults to `None`.
            verbose: as for `keras.Model.fit`. Defaults to `"auto"`.
            checkpoint_dir: a folder where a checkpoint (weights, optimizer
                state, phase, epoch, data-order seed, history) is written
                atomically at every epoch end; rerunning the same `fit()` with it
                resumes where training stopped, and returns the stored history
                once training has finished. See `docs/reliability.md`. Defaults
                to `None`.
            cache_features: train frozen phases on backbone features computed
                once (`True`: in memory; a folder path: in cache files there).
                Exact: same head weights as without caching. Not used with
                `augmentation`. Defaults to `False`.
            report_dir: write learning curves, a confusion matrix and per-class
                metrics (on `validation_data`) to this folder after training.
                Defaults to `None`.
            augmentation: `"light"`, `"medium"`, `"heavy"`, a list of Keras
                preprocessing layers, or `None`; applied to training batches in
                the input pipeline only (never part of the saved model).
                Defaults to `None`.
            precise_bn: in a phase that trains BatchNorm, recompute its moving
                statistics with the current weights over up to 1,024 training
                images before each validation and at the end of the phase, since
                the moving averages lag after few steps
                (`kerastransfer.training.batchnorm`).
                Defaults to `True`.
            head: how frozen phases train the head: `"epochs"` (the optimizer,
                for `epochs`), `"linear_probe"` (solved once on features
                computed once: L2-regularized logistic regression, its strength
                chosen by cross-validation on the training data only, recorded
                as one epoch; then fine-tuning starts from it — LP-FT; linear
                classification heads only, see
                `kerastransfer.training.probe`) or `"auto"`: the linear probe
                for small image data (a `TransferModel` with a linear
                multiclass head, images as a numpy array or `ImageData` of at
                most 10 per class, no augmentation or strategy), where it
                matched a 1,000-epoch head in a tenth of the time
                (`docs/design.md` fact 30), `"epochs"` otherwise. Defaults to
                `"auto"`.
            unlabelled: images without labels, a numpy array shaped like `x`'s
                images, of the same domain (never validation or test images).
                With `head="linear_probe"` on a multiclass task, the probe is
                self-trained on their features: it labels them, the most
                confident per class join the labelled images with those labels
                and it is refitted, twice
                (`kerastransfer.training.self_train`). Fine-tuning still trains
                on `x` alone. Defaults to `None`.
            **kwargs: other `keras.Model.fit` arguments (`class_weight`, also
                `"balanced"`; `steps_per_epoch`, `shuffle`, ...).

        Returns:
            A `PhasedHistory` (a `keras.callbacks.History`) covering all epochs,
            with `history.phases` recording each phase's name, epochs and rule.
        """
        from kerastransfer.training import loop as training

        plan = training.resolve_plan(
            self, plan, epochs, fine_tune_epochs, learning_rate, fine_tune_lr,
            unfreeze, train_bn, lr_decay,
        )
        return training.fit_phases(
            self, plan, x, y, batch_size=batch_size,
            validation_data=validation_data, callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            verbose=verbose, cache_features=cache_features, report_dir=report_dir,
            augmentation=augmentation, precise_bn=precise_bn, head=head,
            unlabelled=unlabelled, **kwargs,
        )

    def lr_find(self, x, y=None, **kwargs):
        """Sweeps the learning rate; see `kerastransfer.training.lr_finder`."""
        from kerastransfer.training.lr_finder import lr_find

        return lr_find(self, x, y, **kwargs)

    # Keras 3.15 multi-worker workarounds, isolated in training/distribute.py.
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        from kerastransfer.training import distribute

        iterator, data_batch = distribute.local_first_batch(self, iterator, data_batch)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        from kerastransfer.training import distribute

        return distribute.reducible_logs(self, super().train_step(data))

    def test_step(self, data):
        from kerastransfer.training import distribute

        return distribute.reducible_logs(self, super().test_step(data))

    # --- Saving -------------------------------------------------------------
    def save(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """Saves to `.keras` atomically: a failed save never leaves a broken file
        at `filepath` (the previous file, if any, stays intact)."""
        from kerastransfer.io import atomic_path

        filepath = str(filepath)
        if not filepath.endswith(".keras"):
            raise ValueError(
                f"{type(self).__name__}.save() writes the .keras format; end the "
                f"path with '.keras'. Received: filepath={filepath!r}"
            )
        if os.path.exists(filepath) and not overwrite:
            raise FileExistsError(
                f"{filepath!r} exists. Pass overwrite=True to replace it."
            )
        with atomic_path(filepath, suffix=".keras") as tmp:
            super().save(tmp, **kwargs)

    def get_config(self) -> dict:
        """The shared part of every task's config (subclasses add their own)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "backbone_name": self.backbone_name,
            "weights": None,  # the weights live in the saved file
            "pretrained": self.pretrained,
            "mixed_precision": self.mixed_precision,
            "phase_state": dict(self._phase_state),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuilds a task from `get_config()`: the saved backbone model is
        passed as `backbone`; its registry spec, pretrained flag and phase
        state (serialization-only) are restored after construction."""
        config = dict(config)
        backbone_name = config.pop("backbone_name", None)
        pretrained = config.pop("pretrained", True)
        phase_state = config.pop("phase_state", None)
        backbone = config.pop("backbone")
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        task = cls(backbone=backbone, **config)
        if backbone_name is not None:
            task.backbone_name = backbone_name
            with contextlib.suppress(ValueError):
                task.backbone_spec = get_backbone(backbone_name)
        task.pretrained = bool(pretrained)
        if phase_state is not None:
            task.set_phase_state(phase_state)
        return task
