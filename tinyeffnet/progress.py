"""A one-line progress bar with no dependency. Where it draws is chosen when the bar starts:

* in a Jupyter notebook (an IPython kernel is running): one output, replaced in place through an IPython
  display handle, so a saved notebook keeps only the final state of each bar;
* on a terminal (stderr is a tty): one line, redrawn in place with a carriage return;
* anywhere else (a log file, a pipe, CI): only the closing line of each bar, so a log holds one line per bar.
"""

import sys
import time

TTY_REDRAW_S = 0.1        # a terminal redraws cheaply
NOTEBOOK_REDRAW_S = 0.5   # each notebook redraw is a message to the front end


def format_seconds(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def notebook_display():
    """IPython's ``display`` when this process is an IPython kernel (a notebook), else None.

    IPython is only looked for in ``sys.modules``: a kernel has always imported it, and importing it here
    would slow every command down for nothing."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    if getattr(shell, "kernel", None) is None:      # not running (None), or a terminal IPython shell
        return None
    from IPython.display import display
    return display


class Progress:
    """``Progress(total, prefix)``, then ``update(done, **fields)`` as work finishes and ``close()`` once at
    the end, also when stopping early: the closing line shows the last state and the time taken.

    ``stream`` (default: the ``sys.stderr`` of the moment) forces a stream and so leaves notebook mode out."""

    def __init__(self, total, prefix, stream=None, width=24):
        self.total, self.prefix, self.width = total, prefix, width
        self.display = notebook_display() if stream is None else None
        self.stream = stream or sys.stderr   # looked up now, not at import, so a redirected stderr is honoured
        self.tty = self.display is None and self.stream.isatty()
        if self.display is not None:
            self.every = NOTEBOOK_REDRAW_S
        else:
            self.every = TTY_REDRAW_S if self.tty else None     # None: draw only when closing
        self.handle = None
        self.done, self.fields = 0, {}
        self.start = self.last = time.perf_counter()

    def update(self, done, **fields):
        self.done, self.fields = done, fields
        now = time.perf_counter()
        if self.every is not None and (now - self.last >= self.every or done >= self.total):
            self.last = now
            self.draw(self.line(now, closing=False))

    def close(self):
        self.draw(self.line(time.perf_counter(), closing=True))
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self, now, closing):
        """``prefix [####....] done/total field value ... eta m:ss`` (closing: ``in m:ss``, the time taken)."""
        filled = int(self.width * min(self.done, self.total) / max(1, self.total))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = now - self.start
        if closing:
            when = f"in {format_seconds(elapsed)}"
        else:
            rate = self.done / max(elapsed, 1e-9)
            when = f"eta {format_seconds((self.total - self.done) / rate if rate > 0 else 0.0)}"
        text = "".join(f" {k} {v}" for k, v in self.fields.items())
        return f"{self.prefix} [{bar}] {self.done}/{self.total}{text} {when}"

    def draw(self, line):
        if self.display is not None:
            bundle = {"text/plain": line}
            if self.handle is None:
                self.handle = self.display(bundle, raw=True, display_id=True)
            else:
                self.handle.update(bundle, raw=True)
            return
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()
