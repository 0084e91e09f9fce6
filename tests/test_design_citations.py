"""The code and docs cite only files that exist in this repository, and every
`docs/design.md` fact they cite is there."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED = ["kerastransfer", "tests", "benchmarks", "examples", "export", "scripts",
           "docs", "README.md", "Makefile"]
# A repository path named in text: docs/x.md, kerastransfer/a/b.py, scripts/x.sh
_PATH = re.compile(
    r"(?<![\w/.-])((?:docs|tests|scripts|benchmarks|examples|kerastransfer|export)"
    r"/[\w/.-]*\w\.(?:md|py|sh|json|txt))")
_FACT = re.compile(r"docs/design\.md,?\s+facts?\s+(\d+)((?:\s*(?:,|and|-|–)\s*\d+)*)")


def _files():
    for entry in SCANNED:
        path = os.path.join(ROOT, entry)
        if os.path.isfile(path):
            yield path
        for folder, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__"))
                       and d != "data"]
            for name in names:
                if name.endswith((".py", ".md", ".sh", ".cfg", ".toml")):
                    yield os.path.join(folder, name)


def _design_facts():
    with open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8") as f:
        return {int(n) for n in re.findall(r"^(\d+)\. ", f.read(), re.MULTILINE)}


def _texts():
    for path in _files():
        with open(path, encoding="utf-8", errors="replace") as f:
            yield os.path.relpath(path, ROOT), f.read()


def test_design_md_numbers_its_facts_once_each():
    with open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8") as f:
        numbers = [int(n) for n in re.findall(r"^(\d+)\. ", f.read(), re.MULTILINE)]
    assert len(numbers) == len(set(numbers)) and len(numbers) >= 15
    assert set(numbers) == set(range(1, max(numbers) + 1))


def test_no_citation_of_a_document_outside_the_repository():
    outside = "DESIGN" + ".md"  # spelled in two parts so this file does not match
    offenders = [name for name, text in _texts()
                 if name != "tests/test_design_citations.py" and outside in text]
    assert offenders == []


def test_cited_facts_exist():
    facts = _design_facts()
    cited = {}
    for name, text in _texts():
        for match in _FACT.finditer(text):
            numbers = [int(match.group(1))] + [
                int(n) for n in re.findall(r"\d+", match.group(2))]
            for n in numbers:
                cited.setdefault(n, []).append(name)
    assert cited, "no docs/design.md citation found: the pattern is broken"
    missing = {n: names for n, names in cited.items() if n not in facts}
    assert missing == {}


@pytest.mark.parametrize("folder", ["kerastransfer", "docs"])
def test_cited_repository_paths_exist(folder):
    missing = []
    for name, text in _texts():
        if not name.startswith(folder):
            continue
        for path in set(_PATH.findall(text)):
            if "<" in path or "*" in path:
                continue
            # repository-relative, or package-relative ("export/onnx.py")
            if not any(os.path.exists(os.path.join(ROOT, base, path))
                       for base in ("", "kerastransfer")):
                missing.append((name, path))
    assert missing == []
