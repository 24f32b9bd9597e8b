"""The one exception type a user should ever see from tinyeffnet.

Raise ``TinyEffNetError`` with a message that names the problem and says what to do; the command-line
entry points print it without a traceback and exit with status 2."""


class TinyEffNetError(Exception):
    """A problem with the user's input (arguments, files, data) explained in plain words."""
