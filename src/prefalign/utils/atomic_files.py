"""Writing user-facing files and folders so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "x" (not mkstemp) so the file gets the usual permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
