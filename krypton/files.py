"""Writing files so that nothing is ever half-written, downloads included.

Every file the package writes (checkpoints, tuning, results, plots, cache entries, downloads)
goes through :func:`atomic_write`: the bytes go to a temporary file in the same directory, are
flushed to disk, and only then renamed over the target. A full disk, an exception or a Ctrl-C
in the middle leaves the old file as it was, and the rename never follows a symlink at the
target (it replaces the link itself). :func:`check_writable` lets a command refuse an output
path before it starts an hour of work, instead of failing at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import IO, Iterator

from tqdm.auto import tqdm


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit, rename it to ``path``.

    Args:
        path: the file to create or replace. Its directory must exist.
        mode: ``"wb"`` (binary) or ``"w"`` (text, UTF-8).

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path``
    is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                         dir=target.parent)
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, 0o666 & ~_UMASK)   # mkstemp makes 0600; a new file gets the usual mode
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def _read_umask() -> int:
    mask = os.umask(0o022)   # the only way to read it is to set it: once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Raise ValueError now if ``path`` cannot be written later; return it as a Path.

    The directory must exist and be writable, and ``path`` must not be a directory. Commands
    call this before long work, so a typo in ``--out`` costs a second, not a training run.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ValueError(f"the {what} path {str(target)!r} is a directory: give a file name")
    if not parent.is_dir():
        raise ValueError(f"the {what} path {str(target)!r} is in a directory that does not "
                         f"exist: create {str(parent)!r} first or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"the {what} path {str(target)!r} is in a directory you cannot write "
                         f"to ({str(parent)!r}): choose another path")
    return target


def download_verified(url: str, destination: Path, md5: str, *, timeout: float) -> None:
    """Fetch ``url`` into ``destination``, which appears only once complete and matching ``md5``.

    A progress bar shows the transfer. ``timeout`` is the seconds without progress after which
    the server counts as dead. Raises OSError for a short body or a wrong checksum; the
    destination is then left as it was (absent, for a first download).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    # atomic_write renames a temporary file beside the destination into place only when the
    # block ends cleanly: a short body or a wrong checksum raises inside it, and a Ctrl-C
    # anywhere leaves no file that looks complete.
    with atomic_write(destination, "wb") as out, \
            urllib.request.urlopen(url, timeout=timeout) as response:
        digest = hashlib.md5(usedforsecurity=False)
        declared = response.headers.get("Content-Length")
        expected_size = int(declared) if declared and declared.isdigit() else None
        received = 0
        with tqdm(total=expected_size, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=destination.name) as progress:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                progress.update(len(chunk))
        # urllib returns a short body without complaint when the server closes early.
        if expected_size is not None and received != expected_size:
            raise OSError(f"transfer interrupted: received {received} of {expected_size} bytes")
        if digest.hexdigest() != md5:
            raise OSError(f"checksum mismatch: expected md5 {md5}, got {digest.hexdigest()} "
                          f"({received} bytes)")


_CHUNK_BYTES = 1 << 20
