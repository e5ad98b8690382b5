"""The one error type a user sees: a one-line message naming the bad value and what was expected."""


class NasdunError(ValueError):
    """A bad input from the user (a name, a value, a file); the CLI prints it as one line."""
