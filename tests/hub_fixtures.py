"""Builders of small TF-Hub style SavedModels for the tests (no download).

Each writes a TF2 SavedModel as TF-Hub publishes them (the "reusable SavedModel"
API): a traced `__call__` (with a `training` argument where it matters),
`variables`, `trainable_variables` and `regularization_losses` attributes.
"""

from __future__ import annotations

import os

import numpy as np

REG_SCALE = 0.01
BN_MOMENTUM = 0.9


def _trackable():
    import tensorflow as tf

    return tf.__internal__.tracking.AutoTrackable()


def make_image_hub(path, *, size=32, channels=3, features=8, fixed_size=True,
                   output="vector", signatures=True, seed=0):
    """A conv + BatchNorm + ReLU image feature extractor, saved under `path`.

    Args:
        size: the declared height/width (`fixed_size=True`) of the input.
        output: `"vector"` (pooled, (batch, features)) or `"map"`
            (batch, h, w, features).
        signatures: also save a `serving_default` signature returning a dict
            `{"features": ..., "logits": ...}`.

    Returns:
        `path` (a string). The model takes RGB in [0, 1]; in training mode its
        BatchNorm uses batch statistics and updates its moving statistics with
        momentum `BN_MOMENTUM`; its regularization loss is
        `REG_SCALE * sum(kernel ** 2)`.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    obj = _trackable()
    kernel = tf.Variable(rng.normal(0, 0.3, (3, 3, channels, features)).astype(
        "float32"), name="conv/kernel")
    bias = tf.Variable(np.zeros(features, "float32"), name="conv/bias")
    gamma = tf.Variable(np.ones(features, "float32"), name="bn/gamma")
    beta = tf.Variable(np.zeros(features, "float32"), name="bn/beta")
    moving_mean = tf.Variable(np.zeros(features, "float32"), trainable=False,
                              name="bn/moving_mean")
    moving_var = tf.Variable(np.ones(features, "float32"), trainable=False,
                             name="bn/moving_variance")
    head = tf.Variable(rng.normal(0, 0.3, (features, 3)).astype("float32"),
                       name="logits/kernel")
    obj.kernel, obj.bias, obj.gamma, obj.beta = kernel, bias, gamma, beta
    obj.moving_mean, obj.moving_var, obj.head = moving_mean, moving_var, head

    def forward(x, training):
        y = tf.nn.conv2d(x, kernel, 1, "SAME") + bias
        if training:
            mean, var = tf.nn.moments(y, [0, 1, 2])
            moving_mean.assign(BN_MOMENTUM * moving_mean + (1 - BN_MOMENTUM) * mean)
            moving_var.assign(BN_MOMENTUM * moving_var + (1 - BN_MOMENTUM) * var)
        else:
            mean, var = moving_mean, moving_var
        y = tf.nn.relu(tf.nn.batch_normalization(y, mean, var, beta, gamma, 1e-3))
        return y if output == "map" else tf.reduce_mean(y, [1, 2])

    @tf.function
    def call(x, training=False):
        return forward(x, training)

    side = size if fixed_size else None
    spec = tf.TensorSpec([None, side, side, channels], tf.float32)
    call.get_concrete_function(spec, training=True)
    call.get_concrete_function(spec, training=False)
    obj.__call__ = call
    obj.variables = [kernel, bias, gamma, beta, moving_mean, moving_var, head]
    obj.trainable_variables = [kernel, bias, gamma, beta, head]
    obj.regularization_losses = [tf.function(
        lambda: REG_SCALE * tf.reduce_sum(tf.square(kernel)), input_signature=[])]
    saved_signatures = None
    if signatures:
        @tf.function(input_signature=[tf.TensorSpec([None, side, side, channels],
                                                    tf.float32, name="images")])
        def serving(images):
            pooled = forward(images, False)
            if output == "map":
                pooled = tf.reduce_mean(pooled, [1, 2])
            return {"features": pooled, "logits": tf.matmul(pooled, head)}

        saved_signatures = {"serving_default": serving}
    tf.saved_model.save(obj, os.fspath(path), signatures=saved_signatures)
    return os.fspath(path)


def make_text_hub(path, *, dim=6, buckets=64, seed=0):
    """A string -> vector embedding (lower-case, split, hash, embed, mean).

    Returns:
        `path`. `__call__` takes a (batch,) string tensor and returns (batch, dim).
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    obj = _trackable()
    table = tf.Variable(rng.normal(0, 0.5, (buckets, dim)).astype("float32"),
                        name="embeddings")
    obj.table = table

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def call(sentences):
        tokens = tf.strings.split(tf.strings.lower(sentences))
        ids = tf.strings.to_hash_bucket_fast(tokens, buckets)
        vectors = tf.ragged.map_flat_values(tf.nn.embedding_lookup, table, ids)
        return tf.reduce_mean(vectors, axis=1)

    obj.__call__ = call
    obj.variables = [table]
    obj.trainable_variables = [table]
    obj.regularization_losses = []
    tf.saved_model.save(obj, os.fspath(path))
    return os.fspath(path)


def make_stateless_hub(path, size=32):
    """A SavedModel with a function but no variables (a pure function)."""
    import tensorflow as tf

    obj = _trackable()

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def call(x):
        return tf.reduce_mean(x, [1, 2])

    obj.__call__ = call
    tf.saved_model.save(obj, os.fspath(path), signatures={"serving_default": call})
    return os.fspath(path)


def make_tf1_hub_module(path):
    """A folder laid out like a TF1 `hub.Module` (it has `tfhub_module.pb`)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")  # ModuleDef {format: 3}
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"")
    return os.fspath(path)
