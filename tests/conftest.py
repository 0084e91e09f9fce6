"""Shared test set-up: quiet TensorFlow, fixed seeds, tiny data, bounded memory.

Memory: one pytest process that builds hundreds of Keras models grows without
bound (Keras's global graph state, TensorFlow's function caches). Three things keep
the whole suite's peak resident memory low:

- `_fresh_keras_per_module`: `keras.backend.clear_session()`, `gc.collect()` and
  glibc's `malloc_trim` after every test module;
- `ISOLATED`: the heaviest tests (every backbone family exported to ONNX, the
  TF-Hub SavedModels) run in child pytest processes, so their memory is returned
  to the system when they end (the demo, distribution and documentation tests
  start their own processes);
- `KT_PEAK_RSS_FILE` / the terminal summary: the peak RSS of this process, of
  its largest child, and of all processes together (sampled: with two xdist
  workers the suite's peak is a sum) are printed at the end of every run (and
  written to the file named by `KT_PEAK_RSS_FILE` when set), so a change that
  brings memory back is seen at once.

Time: pytest-timeout stops any test after `timeout` seconds (pyproject.toml); tests
not marked `slow` get `FAST_TIMEOUT` instead, since they should take seconds.
"""

import contextlib
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_HOME",
                      os.path.join(os.path.dirname(__file__), ".keras_home"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Set in a child process that runs isolated tests: the file its outcomes go to.
_IN_CHILD = "KT_ISOLATED_CHILD"

# Tests run in a child pytest process (node id prefix relative to tests/ -> how
# many per child). "module": every selected test of the module in one child (they
# share expensive module fixtures); "test": one child per test. Each child costs a
# Python + TensorFlow start (~5 s) and gives all its memory back when it ends.
ISOLATED = {
    # TF-Hub SavedModels loaded into TensorFlow's graph state
    "test_tfhub.py::": "module",
    # 14 backbone families exported to ONNX (their segmentation models)
    "test_segmentation_catalog.py::": "module",
}


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same seeds (Keras, TensorFlow, numpy)."""
    import keras

    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True, scope="module")
def _fresh_keras_per_module():
    """Frees Keras's global state and the module's models after each test module."""
    yield
    release_memory()


def release_memory():
    """Clears Keras's global state, collects garbage and gives freed heap pages
    back to the system (after a module, or between the models of one test)."""
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session(free_memory=True)
    gc.collect()
    _LIBC_TRIM()


def _malloc_trim():
    """glibc keeps freed heap pages; `malloc_trim(0)` gives them back, so a
    worker that ran many modules does not hold their peak for the rest of the
    run. A no-op where glibc is not there."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


_LIBC_TRIM = _malloc_trim()


def _isolation(nodeid):
    name = nodeid.split("/")[-1]
    for prefix, granularity in ISOLATED.items():
        if name.startswith(prefix):
            return granularity
    return None


class IsolatedTestFailed(Exception):
    """The test failed in its child process (the message is its report)."""


class _ChildRun:
    """One child pytest process running a group of node ids; outcomes by node id."""

    def __init__(self, nodeids):
        self.nodeids = nodeids
        self.results = None

    def run(self, config):
        if self.results is not None:
            return self.results
        fd, path = tempfile.mkstemp(prefix="kt_isolated_", suffix=".json")
        os.close(fd)
        env = dict(os.environ, **{_IN_CHILD: path})
        timeout = float(config.getini("timeout") or 0) or None
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-o", "addopts=--strict-markers", *self.nodeids]
        try:
            proc = subprocess.run(command, cwd=str(config.rootpath), env=env,
                                  capture_output=True, text=True,
                                  timeout=timeout and timeout * len(self.nodeids))
            output = proc.stdout[-20000:] + proc.stderr[-5000:]
            with open(path) as f:
                text = f.read()
            self.results = json.loads(text) if text else {}
        except subprocess.TimeoutExpired as error:
            output, self.results = f"child process timed out: {error}", {}
        finally:
            os.remove(path)
        self.output = output
        return self.results


class IsolatedItem(pytest.Item):
    """A test that runs in a child pytest process (see `ISOLATED`)."""

    def __init__(self, *, original, child, **kwargs):
        super().__init__(**kwargs)
        self.original_nodeid = original.nodeid
        self.child = child
        # no timeout here (the first test of a group waits for the whole group); the
        # child applies the per-test timeouts, and `_ChildRun` bounds the group
        self.own_markers = [pytest.mark.timeout(0).mark, *original.own_markers]
        self.keywords.update(original.keywords)
        self._location = original.location

    def runtest(self):
        results = self.child.run(self.config)
        result = results.get(self.original_nodeid)
        if result is None:
            raise IsolatedTestFailed(
                f"{self.original_nodeid} did not report in its child process:\n"
                f"{self.child.output}")
        if result["outcome"] == "skipped":
            pytest.skip(result["report"])
        if result["outcome"] != "passed":
            raise IsolatedTestFailed(result["report"])

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, IsolatedTestFailed):
            return f"[in a child process]\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self._location[0], self._location[1], f"{self.name} [own process]"


# Seconds a test not marked `slow` may take (slow ones: `timeout` in pyproject.toml).
FAST_TIMEOUT = 240


# The longest modules, longest first: with two xdist workers taking one module at
# a time (`make test`), starting the long ones first keeps one long module from
# running alone at the end. Rough order, from `--durations` runs.
LONG_MODULES = (
    "test_catalog.py", "test_docs.py", "test_docs_tasks.py", "test_demo.py",
    "test_export.py",
    "test_detection_model.py", "test_audio_model.py", "test_segmentation_catalog.py",
    "test_tfhub.py", "test_distribute.py", "test_audio_demo.py", "test_text_demo.py",
    "test_cli.py", "test_resume.py", "test_segmentation.py", "test_text.py",
)


def _module_rank(item):
    name = item.nodeid.split("::")[0].split("/")[-1]
    return LONG_MODULES.index(name) if name in LONG_MODULES else len(LONG_MODULES)


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: group what will run
def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_module_rank)  # stable: a module's tests keep their order
    for item in items:
        if item.get_closest_marker("slow") is None and \
                item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAST_TIMEOUT))
    if os.environ.get(_IN_CHILD):
        return
    groups = {}
    for index, item in enumerate(items):
        granularity = _isolation(item.nodeid)
        if not isinstance(item, pytest.Function) or granularity is None:
            continue
        key = item.nodeid.split("::")[0] if granularity == "module" else item.nodeid
        groups.setdefault(key, []).append(index)
    for indices in groups.values():
        child = _ChildRun([items[i].nodeid for i in indices])
        for i in indices:
            items[i] = IsolatedItem.from_parent(
                items[i].parent, name=items[i].name, original=items[i], child=child)


def pytest_runtest_logreport(report):
    """In a child process: record each test's outcome for the parent."""
    path = os.environ.get(_IN_CHILD)
    if not path:
        return
    if report.when != "call" and not (report.failed or report.skipped):
        return
    with open(path) as f:
        text = f.read()
    results = json.loads(text) if text else {}
    if report.when == "teardown" and report.nodeid in results and not report.failed:
        return
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        entry = {"outcome": "skipped", "report": reason}
    else:
        entry = {"outcome": report.outcome, "report": report.longreprtext}
    if results.get(report.nodeid, {}).get("outcome") == "failed":
        return  # keep the first failure (a teardown error after a failed call)
    results[report.nodeid] = entry
    with open(path, "w") as f:
        json.dump(results, f)


def _peak_rss_mib(who):
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest waited-for child.
    return resource.getrusage(who).ru_maxrss / 1024.0


class _TreeRss:
    """Samples the resident memory of this process and all its descendants (xdist
    workers, isolated children, subprocesses) every `interval` seconds: with
    several workers the suite's peak is their sum, which no one process sees."""

    def __init__(self, interval=0.5):
        self.interval = interval
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page_mib = os.sysconf("SC_PAGE_SIZE") / 1024.0 ** 2

    def start(self):
        if os.path.isdir("/proc/self"):  # Linux only; elsewhere no sampled line
            self._thread.start()

    def stop(self):
        self._stop.set()

    def _run(self):
        root = os.getpid()
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError, ValueError):
                self.peak_mib = max(self.peak_mib, self._sample(root))

    def _sample(self, root):
        parents, rss = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry}/stat") as f:
                    # the command name may hold spaces: fields follow the last ')'
                    fields = f.read().rsplit(")", 1)[1].split()
                pid = int(entry)
                parents[pid] = int(fields[1])
                rss[pid] = int(fields[21]) * self._page_mib
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            total += rss.get(pid, 0.0)
            stack.extend(child for child, parent in parents.items() if parent == pid)
        return total


_TREE_RSS = _TreeRss()


def pytest_configure(config):
    if not os.environ.get(_IN_CHILD) and not os.environ.get("PYTEST_XDIST_WORKER"):
        _TREE_RSS.start()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if os.environ.get(_IN_CHILD):
        return
    _TREE_RSS.stop()
    own = _peak_rss_mib(resource.RUSAGE_SELF)
    children = _peak_rss_mib(resource.RUSAGE_CHILDREN)
    line = (f"peak RSS: this process {own / 1024:.2f} GiB, "
            f"largest child process {children / 1024:.2f} GiB, all processes "
            f"together {_TREE_RSS.peak_mib / 1024:.2f} GiB (sampled every "
            f"{_TREE_RSS.interval:g} s)")
    terminalreporter.write_sep("-", line)
    path = os.environ.get("KT_PEAK_RSS_FILE")
    if path:
        with open(path, "w") as f:
            f.write(f"self_mib={own:.0f}\nchildren_mib={children:.0f}\n"
                    f"tree_mib={_TREE_RSS.peak_mib:.0f}\n")


@pytest.fixture
def tiny_spec():
    """`tests/training_helpers.tiny_backbone` registered as "tiny_test_net" (three
    blocks, so phases and per-block learning rates apply) for one test."""
    import kerastransfer as kt
    from tests.training_helpers import register_tiny_backbone

    yield register_tiny_backbone()
    kt.unregister_backbone("tiny_test_net")


def separable_images(n_per_class=24, size=32, num_classes=2, seed=0):
    """Images whose class is visible in colour and brightness: learnable quickly."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(num_classes):
        base = np.zeros((size, size, 3), dtype="float32")
        base[..., label % 3] = 200.0
        base += 40.0 * label
        noise = rng.normal(0, 25, (n_per_class, size, size, 3))
        images.append(np.clip(base + noise, 0, 255))
        labels.append(np.full(n_per_class, label))
    x = np.concatenate(images).astype("float32")
    y = np.concatenate(labels).astype("int64")
    order = rng.permutation(len(x))
    return x[order], y[order]


@pytest.fixture
def tiny_data():
    return separable_images()
