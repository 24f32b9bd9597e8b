"""A one-line progress bar on stderr: no dependency, redrawn in place on a terminal and printed
every ``every`` seconds when stderr is a file or a pipe (CI logs, notebooks)."""

import sys
import time


def format_seconds(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, total, prefix, stream=None, every=10.0, width=24):
        stream = stream or sys.stderr         # looked up now, not at import, so a redirected stderr is honoured
        self.total, self.prefix, self.stream, self.width = total, prefix, stream, width
        self.tty = stream.isatty()
        self.every = 0.1 if self.tty else every
        self.start = self.last = time.perf_counter()

    def update(self, done, **fields):
        now = time.perf_counter()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        filled = int(self.width * done / max(1, self.total))
        bar = "#" * filled + "." * (self.width - filled)
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        text = " ".join(f"{k} {v}" for k, v in fields.items())
        line = f"{self.prefix} [{bar}] {done}/{self.total} {text} eta {format_seconds(eta)}"
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
