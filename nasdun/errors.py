"""The one error type a user sees: a one-line message naming the bad value and what was expected."""


class NasdunError(ValueError):
    """A bad input from the user (a name, a value, a file); the CLI prints it as one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a long command; ``resume`` is the command that continues it (the CLI prints it, exit 130)."""

    def __init__(self, resume: str) -> None:
        super().__init__(resume)
        self.resume = resume
