"""The task guides' code blocks (docs/audio, detection, medical, segmentation,
text) run, as tests/test_docs.py runs the others (see there)."""

import pytest
from test_docs import TASK_DOCS, run_blocks, sessions


def test_task_guides_exist():
    import os

    from test_docs import ROOT

    assert all(os.path.exists(os.path.join(ROOT, path)) for path in TASK_DOCS)


@pytest.mark.parametrize("blocks", sessions(TASK_DOCS))
def test_task_docs_blocks_run(blocks, tmp_path):
    run_blocks(blocks, tmp_path)
