"""Every lesson notebook runs top to bottom in a fresh kernel (with the small CI budget), and each progress
bar it shows is one display updated in place, not lines of text."""

import re
import shutil
from pathlib import Path

import nbclient
import nbformat
import pytest

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
PROGRESS_BAR = re.compile(r"\[[#.]+\] \d+/\d+")     # tinyeffnet.progress: "prefix [###.....] done/total ..."


def test_there_are_lessons():
    assert NOTEBOOKS, f"no notebooks under {LESSONS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_lesson_runs(path, tmp_path, monkeypatch):
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    monkeypatch.setenv("TINYEFFNET_LESSON_BUDGET", "small")
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(LESSONS)}})
    client.execute()   # raises CellExecutionError, naming the cell, if any cell fails
    for cell in nb.cells:
        streamed = "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")
        assert not PROGRESS_BAR.search(streamed), f"progress printed as text, not one updating display:\n{cell.source}"
