"""The one error type a user sees: a one-line message naming the bad value and what was expected."""


class NasdunError(ValueError):
    """A bad input from the user (a name, a value, a file); the CLI prints it as one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a long command; ``resume`` is the command that continues it (the CLI prints it, exit 130)."""

    def __init__(self, resume: str) -> None:
        super().__init__(resume)
        self.resume = resume


def place_error(err: OSError) -> NasdunError:
    """A place the user named that cannot be written or read (read-only, protected, a file where a folder must be) as
    one line naming it and why; the CLI turns any such ``OSError`` into this, and the out-folder checks raise it first."""
    import errno

    where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
    why = {
        errno.EROFS: "a read-only file system", errno.EACCES: "permission denied", errno.EPERM: "not permitted here",
        errno.ENOTDIR: "a part of the path is a file, not a folder", errno.ENOSPC: "no space left on the device",
    }.get(err.errno or 0)  # fmt: skip
    return NasdunError(f"cannot use {str(where)!r}: {why or err.strerror}; expected a place this user can write")
