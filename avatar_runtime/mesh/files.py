"""All-or-nothing writes of one or more files (a .glb, or an .obj with its .mtl and .png)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomically(files: dict[Path, bytes]) -> None:
    """Write every `path: data` pair so readers never see a partial file.

    Each file goes to a temp file in its destination's directory (same filesystem, so
    os.replace is an atomic rename) and is renamed into place only once all temps are
    written. The first path is renamed last: it is the file other files hang off (the
    .obj naming its .mtl), so its appearance means the set is complete. If anything
    fails, temps and files already renamed by this call are removed before re-raising.
    """
    temps: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for path, data in files.items():
            temps[Path(path)] = _write_temp(Path(path), data)
        for path in list(temps)[1:] + list(temps)[:1]:
            os.replace(temps[path], path)
            del temps[path]
            placed.append(path)
    except BaseException:
        for leftover in [*temps.values(), *placed]:
            _unlink_quietly(leftover)
        raise


def _write_temp(path: Path, data: bytes) -> Path:
    """`data` in a new fsynced hidden temp file next to `path`; returns the temp's path."""
    name = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # os.open with 0o666 honours the umask (mkstemp's 0o600 would leak into the result).
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink_quietly(name)
        raise
    return name


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
