"""User-facing errors.

A :class:`HarnessError` is printed by the CLI as one line (``harness: error: ...``) with exit
code 2 and no traceback. Raise it for anything the user can fix: a missing file, a bad option,
an unknown name. Anything else is a bug and keeps its traceback.
"""


class HarnessError(Exception):
    """An error caused by the user's input; its message names the file or option."""
