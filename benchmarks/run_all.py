"""Runs every benchmark and writes one report: benchmarks/results.md + results.json.

Each benchmark measures its timings as ratios side by side in one run (the
machines are noisy); this entry point runs them one after the other, records
the machine, and collects what each printed (and its JSON, where it writes one).

    python benchmarks/run_all.py            # full settings
    python benchmarks/run_all.py --quick    # smaller settings, ~15 min on 2 cores
    python benchmarks/run_all.py --only fit_overhead onnx_speed
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name -> (what it measures, full arguments, quick arguments, writes --json?)
BENCHMARKS = {
    "fit_overhead": ("fit() vs a hand-written tf.function loop (time ratio)",
                     [], ["--quick"], True),
    "feature_cache": ("frozen phase per-epoch time, cached features vs not",
                      [], ["--images", "160", "--epochs", "3"], False),
    "input_pipeline": ("step time with the image-folder pipeline / data in memory",
                       [], ["--images", "160", "--epochs", "3"], False),
    "onnx_speed": ("onnxruntime vs tf.function vs predict; int8/fp16 vs fp32",
                   [], ["--repeats", "10"], False),
    "export_sweep": ("export parity and size per backbone",
                     [], ["--subset"], False),
    "service_load": ("edge service: 8 clients x 50 requests", [], [], False),
    "transfer_effect": ("pretrained vs scratch on the digits target",
                        [], ["--seeds", "0", "1", "2"], True),
    "probe_row_space": ("linear probe in the features' row space vs full width",
                        [], ["--repeats", "1"], False),
    "demo_time": ("make demo's curves, processes and install, side by side",
                  [], ["--parts", "curves", "--repeats", "1"], False),
}


def machine() -> dict:
    import multiprocessing

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": multiprocessing.cpu_count()}
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    for package in ("tensorflow", "keras", "onnxruntime", "tf2onnx"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:  # noqa: BLE001 -- reported as missing
            info[package] = "missing"
    return info


def run(name: str, quick: bool) -> dict:
    description, full, fast, writes_json = BENCHMARKS[name]
    args = list(fast if quick else full)
    json_path = None
    if writes_json:
        json_path = tempfile.mktemp(suffix=".json")
        args += ["--json", json_path]
    command = [sys.executable, os.path.join(HERE, f"{name}.py"), *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    record = {"description": description, "command": " ".join(command[1:]),
              "seconds": round(time.perf_counter() - start, 1),
              "returncode": result.returncode, "output": result.stdout.strip()}
    if result.returncode != 0:
        record["stderr_tail"] = result.stderr.strip()[-2000:]
    if json_path and os.path.exists(json_path):
        with open(json_path) as f:
            record["json"] = json.load(f)
        os.remove(json_path)
    return record


def to_markdown(report: dict) -> str:
    lines = [f"# Benchmarks ({report['date']})", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
             "", "Every timing is a ratio measured side by side in one run.", "",
             "| benchmark | measures | status | seconds |", "|---|---|---|---:|"]
    for name, record in report["results"].items():
        status = "ok" if record["returncode"] == 0 else f"exit {record['returncode']}"
        lines.append(f"| {name} | {record['description']} | {status} | "
                     f"{record['seconds']} |")
    for name, record in report["results"].items():
        script = record["command"].split("benchmarks/")[-1]
        lines += ["", f"## {name}", "", f"`python benchmarks/{script}`",
                  "", "```", record["output"] or "(no output)", "```"]
        if "stderr_tail" in record:
            lines += ["", "stderr (tail):", "```", record["stderr_tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller settings")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS))
    parser.add_argument("--out", default=HERE, help="folder for results.md/json")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from kerastransfer.io import atomic_write_text

    report = {"date": datetime.datetime.now(datetime.UTC).isoformat(
        timespec="minutes"), "quick": args.quick, "machine": machine(), "results": {}}
    for name in args.only or list(BENCHMARKS):
        print(f"running {name} ...", flush=True)
        report["results"][name] = record = run(name, args.quick)
        print(record["output"] or record.get("stderr_tail", ""), flush=True)
    atomic_write_text(os.path.join(args.out, "results.json"),
                      json.dumps(report, indent=2))
    atomic_write_text(os.path.join(args.out, "results.md"), to_markdown(report))
    failed = [n for n, r in report["results"].items() if r["returncode"]]
    print(f"wrote {args.out}/results.md and results.json"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
