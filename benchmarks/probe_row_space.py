"""The linear probe in its features' row space vs at full width, side by side.

`fit_linear_probe` fits few examples of wide (or low-rank) features in an
orthonormal basis of the span of their rows (`kerastransfer/training/probe.py`,
module docstring): the same optimum, `rank` columns instead of the features'
width. This times both on the demo's problems, interleaved in one run (this
machine is shared: compare the ratios), and prints how far apart their
held-out probabilities are:

* `raw pixels, k=10`: the demo's raw-pixel arm (100 labelled 32x32 images,
  1,024 values of rank 60; `standardize="auto"`, so both choices are
  cross-validated), without its self-training rounds;
* `digits_cnn features, k=3`: 30 labelled images' 128 pooled features of the
  shipped backbone (rank 30).

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/probe_row_space.py
    python benchmarks/probe_row_space.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _problems():
    """`{name: (train features, labels, held-out features)}`."""
    from kerastransfer.demo.digits import target_split
    from kerastransfer.demo.pretrain import digits_cnn

    ten = target_split(10, seed=0)
    problems = {"raw pixels, k=10": tuple(
        a.reshape(len(a), -1).astype("float64") if a.ndim > 1 else a
        for a in (ten["x_train"], ten["y_train"], ten["x_test"]))}
    three = target_split(3, seed=0)
    backbone = digits_cnn(weights="mnist")
    features = [backbone.predict(three[key], batch_size=256, verbose=0)
                for key in ("x_train", "x_test")]
    features = [f.astype("float64") for f in features]
    problems["digits_cnn features, k=3"] = (features[0], three["y_train"], features[1])
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np

    from kerastransfer.training import probe as probe_lib

    problems = _problems()
    row_space = probe_lib._row_space
    ways = {"row space": row_space, "full width": lambda z: (z, None)}
    print(f"{'problem':<26} {'rank/width':>11} {'row space s':>12} "
          f"{'full width s':>13} {'ratio':>6} {'max |dprob|':>12} {'same C':>7}")
    for name, (x, y, test) in problems.items():
        times = {way: [] for way in ways}
        fitted = {}
        for _ in range(args.repeats):
            for way, function in ways.items():  # interleaved
                probe_lib._row_space = function
                try:
                    begin = time.perf_counter()
                    fitted[way] = probe_lib.fit_linear_probe(
                        x, y, num_classes=10, seed=0, standardize="auto")
                    times[way].append(time.perf_counter() - begin)
                finally:
                    probe_lib._row_space = row_space
        medians = {way: statistics.median(values) for way, values in times.items()}
        basis = row_space(x)[1]
        rank = x.shape[1] if basis is None else basis.shape[1]
        gap = np.abs(fitted["row space"].predict_proba(test)
                     - fitted["full width"].predict_proba(test)).max()
        print(f"{name:<26} {f'{rank}/{x.shape[1]}':>11} {medians['row space']:>12.2f} "
              f"{medians['full width']:>13.2f} "
              f"{medians['row space'] / medians['full width']:>6.2f} {gap:>12.1e} "
              f"{str(fitted['row space'].C == fitted['full width'].C):>7}")


if __name__ == "__main__":
    main()
