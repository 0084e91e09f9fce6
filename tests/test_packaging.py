"""Packaging: every folder of the package is packaged, and the wheel holds the data."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PACKAGE = os.path.join(ROOT, "kerastransfer")


def _package_folders():
    """Dotted names of the folders under kerastransfer/ that hold files."""
    names = set()
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if any(not f.endswith((".pyc", ".pyo")) for f in files):
            relative = os.path.relpath(folder, ROOT)
            names.add(relative.replace(os.sep, "."))
    return names


def test_every_package_folder_is_in_the_packages_configuration():
    # setuptools warns "Package 'kerastransfer.demo.data' is absent from the
    # `packages` configuration" for any folder left out (it would be dropped).
    from setuptools.config.setupcfg import read_configuration

    packages = set(read_configuration(os.path.join(ROOT, "setup.cfg"))["options"]
                   ["packages"])
    assert "kerastransfer.demo.data" in _package_folders()
    assert _package_folders() <= packages
    assert not [p for p in packages if "__pycache__" in p]


@pytest.mark.slow
def test_wheel_builds_without_warnings_and_holds_the_demo_data(tmp_path):
    source = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    shutil.copytree(PACKAGE, source / "kerastransfer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-v", str(source), "-w", str(wheels)],
        capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "is absent from the `packages` configuration" not in output
    (wheel,) = wheels.glob("kerastransfer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    data = os.path.join(PACKAGE, "demo", "data")
    for name in os.listdir(data):
        assert sizes[f"kerastransfer/demo/data/{name}"] == os.path.getsize(
            os.path.join(data, name))
    modules = {os.path.relpath(os.path.join(folder, f), ROOT).replace(os.sep, "/")
               for folder, _, files in os.walk(PACKAGE) for f in files
               if f.endswith(".py")}
    assert modules <= set(sizes)
