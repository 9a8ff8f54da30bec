"""One exception type for every user-facing failure.

The CLI prints ``SeqrecError`` as a single line (problem + fix) and exits non-zero; anything
else is a bug and keeps its traceback. Library users can catch it to tell bad input from bugs.
"""


class SeqrecError(Exception):
    """A problem with the user's input, files or configuration, with the fix in the message."""
