"""All-or-nothing writes of one or more files (a .glb, or an .obj with its .mtl and .png)."""

from __future__ import annotations

import os
from pathlib import Path

from ..durable import unlink_quietly, write_temp


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
            temps[Path(path)] = write_temp(Path(path).parent, f".{Path(path).name}.", ".tmp", data)
        for path in list(temps)[1:] + list(temps)[:1]:
            os.replace(temps[path], path)
            del temps[path]
            placed.append(path)
    except BaseException:
        for leftover in [*temps.values(), *placed]:
            unlink_quietly(leftover)
        raise
