"""The one exception type for bad data input."""


class DataError(Exception):
    """Bad or unreadable dataset input.

    The message is one short line: what is wrong, which file or folder, and how to fix it.
    """
