"""Where `make demo`'s time goes: its choices measured side by side in one run.

Three parts (docs/design.md fact 32; this machine is shared, so compare ratios):

* `curves`: the scratch arm at k=1, seed 0 (the arm the curves cost most),
  interleaved: held-out curves as before (twelve evaluations per run, in
  batches of the training batch), as now (six, in batches of 256), and none
  (what the demo does where it does not plot). Prints each one's time over
  the first's and checks that the accuracy is the same.
* `processes`: two arms (scratch k=3 and pretrained k=10) one after the other,
  then as two processes at once: the wall-clock ratio.
* `install`: the demo's packages into two fresh virtual environments, `pip
  install` (which byte-compiles on one core) against `pip install
  --no-compile` followed by `python -m compileall -j 0` (what the Makefile
  does).

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/demo_time.py
    python benchmarks/demo_time.py --parts curves --repeats 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_ARM = ("import sys; from kerastransfer.demo import arms; "
        "from kerastransfer.demo.digits import target_split; "
        "arm, k = sys.argv[1], int(sys.argv[2]); "
        "getattr(arms, 'run_' + arm)(target_split(k, seed=0), 0)")


def curves(repeats: int) -> None:
    from kerastransfer.demo import arms
    from kerastransfer.demo.digits import target_split

    split = target_split(1, seed=0)
    settings = {"12 evaluations, training batch": (12, None, True),
                "6 evaluations, batch 256": (6, 256, True),
                "no curve": (arms.EVALUATIONS, arms.VALIDATION_BATCH, False)}
    saved = arms.EVALUATIONS, arms.VALIDATION_BATCH
    times = {name: [] for name in settings}
    accuracy = {}
    try:
        for _ in range(repeats):
            for name, (evaluations, batch, curve) in settings.items():
                arms.EVALUATIONS, arms.VALIDATION_BATCH = evaluations, batch
                begin = time.perf_counter()
                result = arms.run_scratch(split, 0, curve=curve)[2]
                times[name].append(time.perf_counter() - begin)
                accuracy[name] = result["accuracy"]
    finally:
        arms.EVALUATIONS, arms.VALIDATION_BATCH = saved
    first = min(times[next(iter(settings))])
    print(f"curves: scratch arm, k=1, seed 0, {repeats} interleaved repeat(s), "
          "best time / the first setting's")
    for name in settings:
        print(f"  {name:<32} {min(times[name]) / first:5.2f}  "
              f"held-out accuracy {accuracy[name]:.4f}")


def processes() -> None:
    commands = [[sys.executable, "-c", _ARM, "scratch", "3"],
                [sys.executable, "-c", _ARM, "pretrained", "10"]]
    begin = time.perf_counter()
    for command in commands:
        subprocess.run(command, cwd=ROOT, check=True)
    one_after_the_other = time.perf_counter() - begin
    begin = time.perf_counter()
    running = [subprocess.Popen(command, cwd=ROOT) for command in commands]
    for process in running:
        if process.wait():
            raise SystemExit("an arm failed")
    together = time.perf_counter() - begin
    print("processes: scratch k=3 and pretrained k=10, wall clock of both at once / "
          f"one after the other: {together / one_after_the_other:.2f}")


def install() -> None:
    timings = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, no_compile in (("pip install", False),
                                 ("--no-compile + compileall -j 0", True)):
            venv = os.path.join(folder, name.split()[0].strip("-"))
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            python = os.path.join(venv, "bin", "python")
            begin = time.perf_counter()
            subprocess.run([python, "-m", "pip", "install", "--quiet",
                            *(["--no-compile"] if no_compile else []),
                            "-e", f"{ROOT}[cpu]"], check=True,
                           stderr=subprocess.DEVNULL)
            if no_compile:
                subprocess.run([python, "-m", "compileall", "-q", "-j", "0",
                                os.path.join(venv, "lib")], check=True)
            timings[name] = time.perf_counter() - begin
    first = timings["pip install"]
    print("install: the demo's packages into a fresh venv, time / plain pip's")
    for name, seconds in timings.items():
        print(f"  {name:<32} {seconds / first:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ("curves", "processes", "install")
    parser.add_argument("--parts", nargs="+", default=list(parts), choices=parts)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for part in args.parts:
        if part == "curves":
            curves(args.repeats)
        elif part == "processes":
            processes()
        else:
            install()


if __name__ == "__main__":
    main()
