"""Writing user-facing files and folders so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def _write_temporary(path: Path, text: str) -> Path:
    """``text`` in a new, synced file with a unique name beside ``path``; its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "x" (not mkstemp) so the file gets the usual permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "x", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = None
    try:
        tmp = _write_temporary(path, text)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    return path


def create_exclusively(path: str | Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists; True if this call created it.

    Of any number of processes (on one machine or many sharing the folder) asking for the same name,
    exactly one gets True. The text goes to a unique temporary file first and is hard-linked to
    ``path`` (atomic, and it fails if ``path`` exists, on local disks and on NFS), so no reader ever
    sees the file half-written. Where hard links are not supported, an exclusive create does the same.
    """
    path = Path(path)
    tmp = _write_temporary(path, text)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def build_once(path: str | Path, is_complete: Callable[[Path], bool], build: Callable[[Path], object]) -> Path:
    """Make the folder ``path`` with ``build(path)`` unless ``is_complete(path)``: once, however many
    processes ask at the same time.

    For first-use steps that write into a shared cache (a model conversion, a download). The build runs
    under a file lock beside ``path`` (``.<name>.lock``; the kernel releases it when a process dies), and
    ``is_complete`` is asked again once the lock is held, so a process that waited for another's build
    uses it instead of building again. ``build`` should write atomically (``write_folder_atomically``):
    it then only ever replaces a folder that is not complete, which no other process is reading.
    """
    path = Path(path)
    if is_complete(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        if not is_complete(path):
            build(path)
    return path


def _sibling(path: Path, kind: str) -> Path:
    """A hidden name beside ``path`` no other process picks: ``.<name>.<kind>-<pid>.<random>``."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}.{secrets.token_hex(4)}")


def replace_folder(staging: str | Path, final: str | Path, *, aside: str | Path | None = None) -> Path:
    """Rename the complete folder ``staging`` to ``final``.

    An existing ``final`` is first renamed to ``aside`` (by default a unique hidden name beside it; a
    leftover folder of that name is deleted first) and deleted once the new folder is in place, so
    ``final`` is never a half-written folder.
    """
    staging, final = Path(staging), Path(final)
    if final.exists():
        aside = Path(aside) if aside is not None else _sibling(final, "old")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        os.replace(staging, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staging, final)
    return final


def write_folder_atomically(path: str | Path, fill: Callable[[Path], None]) -> Path:
    """Let ``fill`` write the folder's files into a new temporary folder beside ``path``, then put that
    folder in place of ``path`` with ``replace_folder``; the temporary folder is deleted if anything fails.

    The folder and what ``fill`` wrote get the modes a plain mkdir/open would give them (safetensors
    writes its files 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()
    try:
        fill(tmp)
        _apply_umask(tmp)
        replace_folder(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _apply_umask(folder: Path) -> None:
    """Give ``folder``, its subfolders and files the modes a normal mkdir/open would."""
    umask = os.umask(0)
    os.umask(umask)
    for root, _, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


def save_figure_atomically(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as a PNG beside ``path``, rename it over ``path``, and close the figure."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
