"""The one error type a user sees: a one-line message naming the bad value and what was expected."""


class NasdunError(ValueError):
    """A bad input from the user (a name, a value, a file); the CLI prints it as one line.

    The message names the Python parameters it is about as ``name=value`` (``top_k=3``, ``out='runs/x'``,
    ``force=True``), listed in ``params``: that is what a caller of the API passed. The command line (alone) says them as
    its flags (``--top-k 3``, ``--out 'runs/x'``, ``--force``), by the parser's own table (:func:`nasdun.interfaces.cli.flag_words`)."""

    def __init__(self, message: str, params: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.params = tuple(params)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a search; ``run`` is the run folder that continues it (the CLI prints its ``--resume``
    command, exit 130; from Python: ``nasdun.search(run, resume=True)``)."""

    def __init__(self, run: str) -> None:
        super().__init__(run)
        self.run = run


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
