"""The offline text corpus of `python -m kerastransfer.demo.text`: Python's own
standard library, which every Python install carries.

* The labelled task: a docstring (of a module, class or function, >= 5 words)
  -> the standard-library package it comes from (`FAMILIES`: asyncio, email,
  importlib, logging, multiprocessing, unittest, xml, http/urllib). The test
  split is a fixed, seeded sample per family.
* The unlabelled pretraining corpus: every other docstring and every comment
  line of the standard library (tests excluded), cut into chunks of at most
  `chunk_words` words. The test docstrings are left out of it, so the encoder
  never reads a test text, and no label is used.

Source files are parsed with `ast` and `tokenize` (nothing is imported), so
the corpus is the same for a given Python version. No TensorFlow here.
"""

from __future__ import annotations

import ast
import io
import logging
import os
import sysconfig
import tokenize
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FAMILIES", "TextCorpus", "build_corpus", "stdlib_files"]

logger = logging.getLogger("kerastransfer.demo")

# family -> the top-level standard-library names it holds (all of them in
# Python 3.10-3.13).
FAMILIES = {
    "asyncio": ("asyncio",),
    "email": ("email",),
    "importlib": ("importlib",),
    "logging": ("logging",),
    "multiprocessing": ("multiprocessing",),
    "unittest": ("unittest",),
    "xml": ("xml",),
    "http": ("http", "urllib"),
}
MIN_WORDS = 5


@dataclass
class TextCorpus:
    """The demo's data.

    Attributes:
        pool: `(texts, labels)` the labelled budgets are drawn from.
        test: `(texts, labels)` held out (never in `pretraining`).
        class_names: the families, in label order.
        pretraining: unlabelled texts (docstrings and comments) for MLM.
    """

    pool: tuple[list[str], np.ndarray]
    test: tuple[list[str], np.ndarray]
    class_names: list[str]
    pretraining: list[str] = field(default_factory=list)


def stdlib_files(root: str | None = None) -> list[tuple[str, str]]:
    """`(top-level name, path)` of the standard library's `.py` files, sorted;
    tests, `site-packages` and `idle_test` folders left out."""
    root = root or sysconfig.get_paths()["stdlib"]
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in (
            "site-packages", "test", "tests", "idle_test", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                top = os.path.relpath(path, root).split(os.sep)[0]
                found.append((top.removesuffix(".py"), path))
    return found


def _docstrings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text and len(text.split()) >= MIN_WORDS:
                out.append(" ".join(text.split()))
    return out


def _comments(source: str) -> list[str]:
    """Runs of consecutive comment lines, joined (shebangs/pragmas dropped)."""
    out, run = [], []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                text = token.string.lstrip("#").strip()
                if text and not text.startswith(("!", "-*-", "noqa", "type:",
                                                 "pragma")):
                    run.append(text)
            elif token.type not in (tokenize.NL, tokenize.NEWLINE) and run:
                out.append(" ".join(run))
                run = []
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    if run:
        out.append(" ".join(run))
    return [c for c in out if len(c.split()) >= MIN_WORDS]


def _chunks(text: str, words: int) -> list[str]:
    parts = text.split()
    return [" ".join(parts[i:i + words]) for i in range(0, len(parts), words)]


def build_corpus(test_per_class: int = 60, chunk_words: int = 48, seed: int = 0,
                 root: str | None = None) -> TextCorpus:
    """Reads the standard library into a `TextCorpus`.

    Args:
        test_per_class: held-out docstrings per family. Defaults to `60`.
        chunk_words: longest pretraining text, in words. Defaults to `48`.
        seed: the seed of the test sample. Defaults to `0`.
        root: the standard library folder. Defaults to this Python's.

    Returns:
        A `TextCorpus`.

    Raises:
        ValueError: a family has fewer than `test_per_class + 8` docstrings
            (a stripped-down Python install).
    """
    family_of = {top: i for i, tops in enumerate(FAMILIES.values()) for top in tops}
    labelled: list[list[str]] = [[] for _ in FAMILIES]
    other: list[str] = []
    for top, path in stdlib_files(root):
        try:
            with open(path, encoding="utf-8") as handle:
                source = handle.read()
        except (OSError, UnicodeDecodeError):
            continue
        docs = _docstrings(source)
        if top in family_of:
            labelled[family_of[top]] += docs
        else:
            other += docs
        other += _comments(source)
    rng = np.random.default_rng(seed)
    names = list(FAMILIES)
    pool_x, pool_y, test_x, test_y = [], [], [], []
    for label, docs in enumerate(labelled):
        docs = sorted(set(docs))
        if len(docs) < test_per_class + 8:
            raise ValueError(
                f"The standard library has too few {names[label]!r} docstrings for "
                f"the demo. Use a full Python install. Received: {len(docs)} "
                f"docstrings, test_per_class={test_per_class}")
        order = rng.permutation(len(docs))
        test_x += [docs[i] for i in order[:test_per_class]]
        test_y += [label] * test_per_class
        pool_x += [docs[i] for i in order[test_per_class:]]
        pool_y += [label] * (len(docs) - test_per_class)
    held_out = set(test_x)
    unlabelled = [t for t in pool_x + sorted(set(other)) if t not in held_out]
    pretraining = [c for t in unlabelled for c in _chunks(t, chunk_words)]
    logger.info("Corpus: %d pool + %d test docstrings in %d families; %d "
                "pretraining chunks", len(pool_x), len(test_x), len(names),
                len(pretraining))
    return TextCorpus(pool=(pool_x, np.asarray(pool_y, "int64")),
                      test=(test_x, np.asarray(test_y, "int64")),
                      class_names=names, pretraining=pretraining)
