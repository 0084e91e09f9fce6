"""Few-shot levers for the demo's probe, scored without the held-out images.

The demo's pretrained arm (AdaBN + a linear probe on frozen `digits_cnn`
features, `kerastransfer.demo.arms`) misses issue 17's 0.80 / 0.90 at
k = 1 / 3 labels per class. This compares, per seed, levers that need no
more labels, on the target's labelled pool outside the 800 held-out images
(`target_split`'s `x_unlabelled`, whose labels the demo never uses): the pool
is split in two halves by a fixed seed; half A serves as unlabelled images,
half B only scores. AdaBN re-estimates BatchNorm on the whole pool's images,
as the demo does. The held-out images are never loaded.

* `baseline`: the demo's probe (`fit_linear_probe(standardize="auto")`).
* `ncm_cosine`: nearest class mean of L2-normalized features.
* `augment_<n>`: the probe on the labelled images plus `n` augmented copies of
  each (`kerastransfer.demo.augment`, the pretraining augmentation).
* `self_train_<r>`: self-training, round `r`: the probe labels half A; the
  `10 * k * r` most confident images of each predicted class join the
  labelled images with those labels, and the probe is refitted
  (Lee, 2013, "Pseudo-Label"; Yarowsky, 1995).
* `raw_*`: the probe and self-training on raw pixels (the demo's raw-pixel
  arm), to see whether self-training favours the pretrained features.

`--study self_training` runs the demo's own arms (`kerastransfer.demo.arms`)
on the same halves instead: half A plays the unlabelled target images (AdaBN
and self-training), half B the held-out images. It compares, per arm, the
probe with and without self-training (`kerastransfer.training.self_train`),
fine-tuning after the self-trained probe on the labelled images only or on
them plus the probe's pseudo-labelled images, and scratch trained once or
retrained from random weights on the images its first run pseudo-labels.

`--study head` compares the frozen phase's two heads through
`TransferModel.fit` on the same halves (AdaBN on half A, scored on half B,
no self-training): `head="epochs"` (a Keras-trained Dense head, Adam 1e-3,
`cache_features=True`) for `HEAD_EPOCHS` epochs, and `head="linear_probe"`;
each scored after the frozen phase (with its seconds) and after the demo's
fine-tuning (`arms.schedule`, lr 1e-4, BatchNorm frozen), to decide whether
the probe should be the default for small data.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/few_shot_levers.py
    python benchmarks/few_shot_levers.py --budgets 1 --seeds 0 1
    python benchmarks/few_shot_levers.py --study self_training
    python benchmarks/few_shot_levers.py --study head
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

AUGMENT_COPIES = (10, 30)
SELF_TRAIN_ROUNDS = 2
HEAD_EPOCHS = (10, 100, 1000)


def _self_train(fit, f_train, y_train, f_unlabelled, k):
    """Probes after each self-training round (see the module docstring)."""
    probe, probes = fit(f_train, y_train), []
    for round_ in range(1, SELF_TRAIN_ROUNDS + 1):
        proba = probe.predict_proba(f_unlabelled)
        pseudo, confidence = proba.argmax(1), proba.max(1)
        keep = np.concatenate([
            np.flatnonzero(pseudo == c)[np.argsort(-confidence[pseudo == c])
                                        [:10 * k * round_]]
            for c in range(10)])
        probe = fit(np.concatenate([f_train, f_unlabelled[keep]]),
                    np.concatenate([y_train, pseudo[keep]]))
        probes.append(probe)
    return probes


def run(k: int, seed: int) -> dict:
    import keras

    import kerastransfer as kt
    from kerastransfer.demo import arms
    from kerastransfer.demo.augment import augment
    from kerastransfer.demo.digits import load_target, target_split
    from kerastransfer.training.probe import fit_linear_probe

    split = target_split(k, seed=seed)
    pool_labels = load_target()[1][split["unlabelled_index"]]
    order = np.random.default_rng(1000 + seed).permutation(len(pool_labels))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2:]
    y_b = pool_labels[half_b]

    def fit(features, labels):
        return fit_linear_probe(features, labels, num_classes=10, seed=seed,
                                standardize=arms.STANDARDIZE)

    def score(probe, features_b):
        return float(np.mean(probe.logits(features_b).argmax(1) == y_b))

    name, shape = arms.register_backbone()
    keras.utils.set_random_seed(seed)
    model = kt.TransferModel(name, num_classes=10, input_shape=shape,
                             weights="mnist", dropout=0.0)
    model.adapt(arms._model_input(split["x_unlabelled"]))
    extractor = model.feature_extractor()

    def features(images):
        return extractor.predict(arms._model_input(images), batch_size=256, verbose=0)

    f_train, y_train = features(split["x_train"]), split["y_train"]
    f_pool = features(split["x_unlabelled"])
    f_a, f_b = f_pool[half_a], f_pool[half_b]
    row = {"baseline": score(fit(f_train, y_train), f_b)}
    unit = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)  # noqa: E731
    means = np.stack([unit(f_train)[y_train == c].mean(0) for c in range(10)])
    row["ncm_cosine"] = float(np.mean((unit(f_b) @ means.T).argmax(1) == y_b))
    rng = np.random.default_rng(seed + 7)
    for copies in AUGMENT_COPIES:
        extra = augment(np.repeat(split["x_train"], copies, axis=0), rng)
        row[f"augment_{copies}"] = score(fit(
            np.concatenate([f_train, features(extra)]),
            np.concatenate([y_train, np.repeat(y_train, copies)])), f_b)
    for round_, probe in enumerate(_self_train(fit, f_train, y_train, f_a, k), 1):
        row[f"self_train_{round_}"] = score(probe, f_b)
    flat = lambda images: images.reshape(len(images), -1)  # noqa: E731
    p_train, p_pool = flat(split["x_train"]), flat(split["x_unlabelled"])
    row["raw_baseline"] = score(fit(p_train, y_train), p_pool[half_b])
    for round_, probe in enumerate(
            _self_train(fit, p_train, y_train, p_pool[half_a], k), 1):
        row[f"raw_self_train_{round_}"] = score(probe, p_pool[half_b])
    return row


def _pool_halves(k: int, seed: int):
    """`(split, images, labels, half_a, half_b)`: the demo's split and the
    labelled pool outside the held-out images cut in halves (target indices)."""
    from kerastransfer.demo.digits import load_target, target_split

    split = target_split(k, seed=seed)
    images, labels = load_target()
    pool = split["unlabelled_index"]
    order = np.random.default_rng(1000 + seed).permutation(len(pool))
    half_a, half_b = pool[order[: len(order) // 2]], pool[order[len(order) // 2:]]
    return split, images, labels, half_a, half_b


def run_self_training(k: int, seed: int) -> dict:
    """The demo's arms on the pool's halves (see the module docstring)."""
    from kerastransfer.demo import arms

    split, images, labels, half_a, half_b = _pool_halves(k, seed)
    split = {**split, "x_unlabelled": images[half_a], "x_test": images[half_b],
             "y_test": labels[half_b]}
    row = {}
    for self_train in (False, True):
        tag = "self_train" if self_train else "plain"
        for pseudo in ((False, True) if self_train else (False,)):
            _, _, result = arms.run_pretrained(split, seed, self_train=self_train,
                                               fine_tune_pseudo=pseudo)
            row[f"pretrained_{tag}_probe"] = result["probe_accuracy"]
            row[f"pretrained_{tag}_ft{'_pseudo' if pseudo else ''}"] = \
                result["accuracy"]
        row[f"raw_{tag}"] = arms.run_raw_pixels(split, seed, self_train)["accuracy"]
        row[f"random_{tag}"] = arms.run_random_frozen(split, seed,
                                                      self_train)["accuracy"]
    _, _, result = arms.run_scratch(split, seed, pseudo=True)
    row["scratch"] = result["first_run_accuracy"]
    row["scratch_pseudo"] = result["accuracy"]
    return row


def run_head(k: int, seed: int) -> dict:
    """`head="epochs"` vs `head="linear_probe"` (see the module docstring)."""
    import keras

    import kerastransfer as kt
    from kerastransfer.demo import arms

    split, images, labels, half_a, half_b = _pool_halves(k, seed)
    x, y = arms._model_input(split["x_train"]), split["y_train"]
    x_a = arms._model_input(images[half_a])
    x_b, y_b = arms._model_input(images[half_b]), labels[half_b]

    def accuracy(model) -> float:
        return arms._accuracy(model.predict(x_b, batch_size=256, verbose=0), y_b)

    plan = arms.schedule(len(x))
    name, shape = arms.register_backbone()
    row = {}
    heads = [(f"epochs_{e}", "epochs", e) for e in HEAD_EPOCHS] + [
        ("linear_probe", "linear_probe", 1)]
    for tag, head, epochs in heads:
        keras.utils.set_random_seed(seed)
        model = kt.TransferModel(name, num_classes=10, input_shape=shape,
                                 weights="mnist", dropout=0.0)
        model.adapt(x_a)
        start = time.perf_counter()
        model.fit(x, y, epochs=epochs, head=head, cache_features=True,
                  batch_size=plan["batch_size"], verbose=0)
        row[f"{tag}_seconds"] = time.perf_counter() - start
        row[tag] = accuracy(model)
        model.compile(optimizer=keras.optimizers.Adam(arms.FINE_TUNE_LR))
        model.fit(x, y, epochs=0, fine_tune_epochs=plan["epochs"] - 1,
                  fine_tune_lr=arms.FINE_TUNE_LR, batch_size=plan["batch_size"],
                  verbose=0)
        row[f"{tag}_ft"] = accuracy(model)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--study", choices=("levers", "self_training", "head"),
                        default="levers")
    args = parser.parse_args()
    study = {"levers": run, "self_training": run_self_training,
             "head": run_head}[args.study]
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    start = time.perf_counter()
    for k in args.budgets:
        rows = []
        for seed in args.seeds:
            rows.append(study(k, seed))
            print(f"k={k} seed={seed} " + " ".join(
                f"{name} {value:.3f}" for name, value in rows[-1].items()), flush=True)
        print(f"k={k}: accuracy on pool half B, mean ± std over seeds {args.seeds}")
        for name in rows[0]:
            values = [row[name] for row in rows]
            print(f"  {name:<18s} {np.mean(values):.3f} ± {np.std(values):.3f}")
    print(f"total time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
