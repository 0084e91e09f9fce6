"""Every code block of README.md and docs/*.md runs, so the docs cannot drift.

How the blocks run:

- The ```python blocks of one file run in order, in one namespace (a reader reads
  them as one story), in a child process started in a fresh temporary folder that
  holds the fixtures below. Tracebacks name the Markdown file and line.
- ```bash blocks: each command (`\\` continuations joined, `#` comments dropped)
  must start with `kerastransfer` (run through the click CLI in the same process,
  exit code 0 required) or `python -m kerastransfer...` (run as a subprocess).
  Any other command fails the test: give the block a directive.
- Other fences (no language, ```text) are output or synopsis, not run.
- Every file's run is marked `slow` (it starts Python and TensorFlow, then trains
  or exports); `make test-fast` runs only the parser checks here.

Directives are HTML comments (invisible on GitHub) on the lines right before the
opening fence:

- `<!-- offline: OLD -> NEW; OLD2 -> NEW2 -->`: text replacements made for the
  test run only, for blocks that need the network (ImageNet weights, hub handles)
  or a machine this one is not. Every OLD must occur in the block, so a
  replacement cannot silently stop applying.
- `<!-- test: new-process -->`: this block starts a new child process (fresh
  namespace and fixtures), for code that must run before TensorFlow is used.
- `<!-- skip-test: REASON -->`: not run. Only for shell set-up (installs, servers)
  that other tests cover.

Fixtures, made in the temporary folder before the first block:

- image folders of two classes (`green`, `red`; 40x40 PNGs, 10 per class, by
  `kerastransfer.data.synthetic.write_image_folder`): `photos/`, `new_photos/`,
  `flowers/`, `data/`, `calib_images/`, `calibration_images/`;
- arrays of 32x32 RGB images in [0, 255] and integer labels: `x, y` (training),
  `xv, yv` and `x_val` (validation), `images, labels`;
- `tiny_test_net`, a registered three-block backbone with a two-level pyramid
  (`tests/training_helpers`),
  when a block names it: offline variants use it in place of catalog backbones
  whose only role in the block is "a backbone", because Keras traces a
  MobileNetV3Small train step for about 20 s on this machine per `fit` and the
  docs call `fit` many times;
- only when a block names them: `model` (when used before a block assigns it:
  `TransferModel("tiny_test_net", num_classes=2, weights=None,
  input_shape=(32, 32, 3))`), `model.keras` (that model, saved, when a block
  loads it before one saves it), `train_ds, val_ds` (batched `tf.data` of
  `x, y` / `xv, yv`),
  `hub_savedmodel_dir` (a small 32x32 image SavedModel, `tests/hub_fixtures.py`),
  `text_hub_dir` (a string -> vector SavedModel) and `sentences` (one per label).
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOCS = ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
    if name.endswith(".md"))

_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*(offline|test|skip-test):\s*(.*?)\s*-->\s*$")


def parse_blocks(path):
    """The fenced blocks of a Markdown file, with the directives before each.

    Returns:
        A list of dicts: `lang`, `source`, `line` (the 1-based line of the first
        code line), `offline` (list of `(old, new)`), `flags` (set) and `skip`
        (the reason, or `None`).
    """
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        block = {"path": path, "lang": match.group(1), "line": i + 2,
                 "offline": [], "flags": set(), "skip": None}
        j = i - 1
        while j >= 0 and _DIRECTIVE.match(lines[j]):
            kind, value = _DIRECTIVE.match(lines[j]).groups()
            if kind == "offline":
                for pair in value.split(";"):
                    old, sep, new = pair.partition(" -> ")
                    if not sep:
                        raise ValueError(
                            f"An offline directive needs 'OLD -> NEW' pairs "
                            f"separated by ';'. Fix {path}:{j + 1}. "
                            f"Received: {pair!r}")
                    block["offline"].append((old.strip(), new.strip()))
            elif kind == "test":
                block["flags"].update(v.strip() for v in value.split(","))
            else:
                block["skip"] = value
            j -= 1
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        block["source"] = "\n".join(lines[i + 1:end])
        blocks.append(block)
        i = end + 1
    return blocks


def apply_offline(block):
    """The block's source with its offline replacements made."""
    source = block["source"]
    for old, new in block["offline"]:
        if old not in source:
            raise ValueError(
                f"An offline replacement does not occur in its block any more. "
                f"Update the directive before {block['path']}:{block['line'] - 1}. "
                f"Received: old={old!r}")
        source = source.replace(old, new)
    return source


# The task guides' blocks run in tests/test_docs_tasks.py: a second module, so
# that two xdist workers (`make test`) run the two halves side by side.
TASK_DOCS = tuple(os.path.join("docs", f"{name}.md") for name in (
    "audio", "detection", "medical", "segmentation", "text"))


def sessions(paths=None):
    """One pytest param per child process: the runnable blocks it runs (of
    `paths`; defaults to every document but the task guides)."""
    params = []
    for path in paths or [p for p in DOCS if p not in TASK_DOCS]:
        current = []
        for block in parse_blocks(path):
            if block["lang"] not in ("python", "bash") or block["skip"]:
                continue
            if "new-process" in block["flags"] and current:
                params.append(current)
                current = []
            current.append(block)
        if current:
            params.append(current)
    # every run starts Python and TensorFlow and trains or exports: all slow
    return [pytest.param(blocks, marks=[pytest.mark.slow],
                         id=f"{blocks[0]['path']}:{blocks[0]['line']}")
            for blocks in params]


def test_every_block_is_run_or_has_a_reason():
    """python/bash blocks run unless they say why not; skips are shell set-up."""
    runnable = 0
    for path in DOCS:
        for block in parse_blocks(path):
            if block["lang"] in ("python", "bash"):
                if block["skip"] is None:
                    runnable += 1
                    apply_offline(block)  # every replacement still applies
                else:
                    assert block["lang"] == "bash", (
                        f"Only shell set-up may skip the docs test. Make the "
                        f"python block at {path}:{block['line']} runnable (offline "
                        f"directive). Received: skip-test={block['skip']!r}")
    assert runnable >= 10


def test_parser_reads_directives_and_lines(tmp_path, monkeypatch):
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- test: new-process -->\n"
                   "<!-- offline: a -> b; c -> d -->\n"
                   "```python\nprint('a c')\n```\n```\nnot run\n```\n"
                   "<!-- skip-test: installs -->\n```bash\npip install x\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    python, text, bash = parse_blocks("doc.md")
    assert python["line"] == 5 and python["flags"] == {"new-process"}
    assert apply_offline(python) == "print('b d')"
    assert text["lang"] == "" and bash["skip"] == "installs"
    python["offline"].append(("missing", "x"))
    with pytest.raises(ValueError, match="does not occur"):
        apply_offline(python)


@pytest.mark.parametrize("blocks", sessions())
def test_docs_blocks_run(blocks, tmp_path):
    run_blocks(blocks, tmp_path)


def run_blocks(blocks, tmp_path):
    """Runs one session's blocks in a child process; fails with its output."""
    spec = [dict(path=b["path"], line=b["line"], lang=b["lang"],
                 source=apply_offline(b)) for b in blocks]
    spec_path = tmp_path / "blocks.json"
    spec_path.write_text(json.dumps(spec))
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg",
               TFHUB_CACHE_DIR=str(tmp_path / "tfhub_cache"),
               PYTHONPATH=os.pathsep.join([ROOT, HERE]))
    result = subprocess.run([sys.executable, os.path.abspath(__file__), str(spec_path)],
                            cwd=work, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, (
        f"A documentation block failed:\n{result.stdout[-4000:]}\n"
        f"{result.stderr[-8000:]}")
    ran = [line for line in result.stdout.splitlines() if line.startswith("DOCS-OK ")]
    assert len(ran) == len(spec), result.stdout[-4000:]
    print("\n".join(ran))  # seconds per block, shown with -s or on failure


# ---- the child process -------------------------------------------------------


def _make_fixtures(source):
    """Creates the fixtures in the current folder; returns the namespace."""
    from conftest import separable_images

    from kerastransfer.data.synthetic import write_image_folder

    for name in ("photos", "new_photos", "flowers", "data", "calib_images",
                 "calibration_images"):
        write_image_folder(name, per_class=10, size=40)
    x, y = separable_images(n_per_class=24, size=32, seed=0)
    xv, yv = separable_images(n_per_class=8, size=32, seed=1)
    namespace = {"__name__": "__docs__", "x": x, "y": y, "xv": xv, "yv": yv,
                 "x_val": xv, "images": xv, "labels": yv}
    first_use = re.search(r"\bmodel\b(\s*=[^=])?", source)
    needs_model = first_use is not None and not first_use.group(1)
    first_file = re.search(r"(load_model\(\s*)?[\"']model\.keras[\"']", source)
    needs_file = first_file is not None and first_file.group(1) is not None
    if needs_model or needs_file or "tiny_test_net" in source:
        from training_helpers import register_tiny_backbone

        register_tiny_backbone()
    if needs_model or needs_file:  # used before the docs make it
        import kerastransfer as kt

        model = kt.TransferModel("tiny_test_net", num_classes=2,
                                 weights=None, input_shape=(32, 32, 3))
        if needs_model:
            namespace["model"] = model
        if needs_file:
            model.save("model.keras")
    if "train_ds" in source or "val_ds" in source:
        import tensorflow as tf

        namespace["train_ds"] = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        namespace["val_ds"] = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(8)
    if "hub_savedmodel_dir" in source:
        from hub_fixtures import make_image_hub

        namespace["hub_savedmodel_dir"] = make_image_hub(
            os.path.abspath("hub_savedmodel"), size=32)
    if "text_hub_dir" in source:
        from hub_fixtures import make_text_hub

        namespace["text_hub_dir"] = make_text_hub(os.path.abspath("text_hub"))
        namespace["sentences"] = [f"{'good great fine' if label else 'bad awful'} {i}"
                                  for i, label in enumerate(yv)]
    return namespace


def _shell_commands(source):
    """The commands of a bash block: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", source)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


def _run_bash(block):
    from click.testing import CliRunner

    from kerastransfer.cli import cli  # the click group

    for words in _shell_commands(block["source"]):
        where = f"{block['path']}:{block['line']}"
        if words[0] == "kerastransfer":
            result = CliRunner().invoke(cli, words[1:], prog_name="kerastransfer",
                                        catch_exceptions=False)
            if result.exit_code != 0:
                raise RuntimeError(f"{where}: {shlex.join(words)} exited with "
                                   f"{result.exit_code}:\n{result.output}")
        elif words[:2] == ["python", "-m"] and words[2].startswith("kerastransfer"):
            subprocess.run([sys.executable, *words[1:]], check=True)
        else:
            raise RuntimeError(
                f"Only kerastransfer commands run in the docs test. Mark the block "
                f"at {where} with '<!-- skip-test: reason -->' if it is shell "
                f"set-up. Received: {shlex.join(words)}")


def _child(spec_path):
    import logging

    logging.basicConfig(level=logging.WARNING)
    with open(spec_path) as f:
        blocks = json.load(f)
    namespace = _make_fixtures("\n".join(b["source"] for b in blocks))
    for block in blocks:
        started = time.monotonic()
        if block["lang"] == "bash":
            _run_bash(block)
        else:
            # pad so that line numbers in tracebacks are the Markdown file's
            code = compile("\n" * (block["line"] - 1) + block["source"],
                           os.path.join(ROOT, block["path"]), "exec")
            exec(code, namespace)  # noqa: S102 - the documentation's own code
        print(f"DOCS-OK {block['path']}:{block['line']} "
              f"{time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
