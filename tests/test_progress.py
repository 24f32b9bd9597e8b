"""The progress bar in its three places: a notebook (one display, updated), a terminal (one line redrawn
with a carriage return) and a pipe or file (only the closing line)."""

import io
import os
import pty
import sys
import types

import pytest

from tinyeffnet import progress
from tinyeffnet.progress import Progress


def run_bar(bar, steps=5):
    for done in range(1, steps + 1):
        bar.update(done, loss=f"{1 / done:.3f}")
    bar.close()


def read_terminal(leader):
    """Everything written to a pty whose other end is closed (Linux ends it with EIO, others with b"")."""
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks).decode()


@pytest.fixture
def always_redraw(monkeypatch):
    """Every update redraws, so the tests do not depend on how fast the machine is."""
    monkeypatch.setattr(progress, "TTY_REDRAW_S", 0.0)
    monkeypatch.setattr(progress, "NOTEBOOK_REDRAW_S", 0.0)


class FakeHandle:
    def __init__(self, shown):
        self.shown = shown

    def update(self, bundle, raw):
        assert raw
        self.shown[-1] = bundle["text/plain"]


@pytest.fixture
def fake_kernel(monkeypatch):
    """A stand-in IPython kernel in sys.modules; returns the list of outputs currently in the 'notebook'."""
    shown = []

    def display(bundle, raw, display_id):
        assert raw and display_id
        shown.append(bundle["text/plain"])
        return FakeHandle(shown)

    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setitem(sys.modules, "IPython.display", types.SimpleNamespace(display=display))
    return shown


def test_notebook_keeps_one_output_per_bar_holding_its_final_state(fake_kernel, always_redraw, capfd):
    run_bar(Progress(5, "epoch 1/2"))
    run_bar(Progress(5, "epoch 2/2"))
    assert len(fake_kernel) == 2
    assert all(line.startswith(f"epoch {i}/2 [{'#' * 24}] 5/5 loss 0.200 in ") for i, line in zip((1, 2), fake_kernel))
    assert capfd.readouterr().err == ""            # nothing went to stderr


def test_ipython_without_a_kernel_is_not_a_notebook(monkeypatch, capfd):
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert progress.notebook_display() is None
    run_bar(Progress(5, "epoch 1/1"))
    assert capfd.readouterr().err.count("\n") == 1


def test_a_pipe_gets_only_the_closing_line(always_redraw):
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream:
        run_bar(Progress(5, "epoch 1/1", stream=stream))
        run_bar(Progress(3, "epoch 2/2", stream=stream), steps=2)          # stopped early
    with os.fdopen(read_end) as pipe:
        lines = pipe.read().splitlines()
    assert len(lines) == 2 and "\r" not in "".join(lines)
    assert lines[0].startswith(f"epoch 1/1 [{'#' * 24}] 5/5 loss 0.200 in ")
    assert lines[1].startswith(f"epoch 2/2 [{'#' * 16}{'.' * 8}] 2/3 loss 0.500 in ")


def test_a_terminal_redraws_one_line_in_place(always_redraw):
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as stream:
        assert stream.isatty()
        run_bar(Progress(5, "epoch 1/1", stream=stream))
    written = read_terminal(leader).replace("\r\n", "\n")                               # the pty maps \n to \r\n
    assert written.count("\n") == 1 and written.endswith("\n")                        # one line in the end
    draws = written.rstrip("\n").split("\r")[1:]
    assert len(draws) == 6                                                            # 5 updates + the close
    assert draws[0].startswith("epoch 1/1 [") and " 1/5 loss 1.000 eta " in draws[0]
    assert draws[-1].startswith(f"epoch 1/1 [{'#' * 24}] 5/5 loss 0.200 in ") and draws[-1].endswith("\x1b[K")


def test_a_terminal_is_not_redrawn_faster_than_its_redraw_interval(monkeypatch):
    monkeypatch.setattr(progress, "TTY_REDRAW_S", 3600.0)
    stream = io.StringIO()
    monkeypatch.setattr(stream, "isatty", lambda: True)
    bar = Progress(1000, "fast", stream=stream)
    for done in range(1, 1000):                    # far quicker than TTY_REDRAW_S
        bar.update(done)
    assert stream.getvalue() == ""
    bar.update(1000)                               # the last step always draws
    assert " 1000/1000 " in stream.getvalue().split("\r")[-1]
