"""Measure the transfer effect of the offline digits demo over several seeds.

Runs the demo's four arms (`kerastransfer.demo.arms`: pretrained through
`TransferModel` = AdaBN + a linear probe self-trained on the unlabelled target
images + fine-tuning; the same network from scratch, retrained on the images
it pseudo-labels; the self-trained linear probe on raw pixels and on a frozen
random network) at k = 1 / 3 / 10 labels per class on the demo's fixed 800 held-out
images, and prints mean ± std over seeds, the pretrained run's probe-only
accuracy, and the epochs each of pretrained and scratch needs to reach 90% of
its own final accuracy (the "faster convergence" claim).

Source: `digits_cnn` pretrained by `python -m kerastransfer.demo.pretrain`
(weights shipped in `kerastransfer/demo/data/digits_cnn.weights.h5`).
Results of the last full run are in the README ("What `make demo` shows").

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/transfer_effect.py            # 5 seeds
    python benchmarks/transfer_effect.py --seeds 0 1 --budgets 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    import numpy as np

    from kerastransfer.demo.__main__ import run_study, transfer_table
    from kerastransfer.demo.arms import ARMS

    start = time.perf_counter()
    rows, _ = run_study(args.budgets, args.seeds,
                        echo=lambda text: print(text, flush=True))
    total = time.perf_counter() - start
    mean, std = transfer_table(rows, args.budgets)
    print(f"\nHeld-out accuracy on 800 images, mean ± std over seeds {args.seeds}:")
    print(f"{'k/class':>7}  " + "  ".join(f"{arm:>15}" for arm in ARMS)
          + f"  {'probe only':>15}")
    for k in args.budgets:
        cells = [f"{mean[str(k)][a]:.3f} ± {std[str(k)][a]:.3f}" for a in ARMS]
        probe = [r["probe_accuracy"] for r in rows
                 if r["k"] == k and r["arm"] == "pretrained"]
        cells.append(f"{np.mean(probe):.3f} ± {np.std(probe):.3f}")
        print(f"{k:>7}  " + "  ".join(f"{c:>15}" for c in cells))
    print("\nEpochs to 90% of the run's own final accuracy (mean over seeds):")
    for k in args.budgets:
        line = []
        for arm in ("pretrained", "scratch"):
            hits = [r["epochs_to_90_percent_of_final"] for r in rows
                    if r["k"] == k and r["arm"] == arm]
            line.append(f"{arm} {np.mean(hits):.1f} {hits}")
        print(f"  k={k}: " + "; ".join(line))
    print(f"\ntotal time {total:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "mean": mean, "std": std, "rows": rows,
                       "seconds": total}, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
