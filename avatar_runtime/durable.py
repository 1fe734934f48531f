"""Durable file primitives shared by the avatar store and the mesh exporter."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)


def write_temp(directory: Path, prefix: str, suffix: str, data: bytes) -> Path:
    """`data` in a new fsynced temp file `<prefix><random><suffix>` inside `directory`.

    The temp lives beside its destination (same filesystem) so a later os.replace is an
    atomic rename. os.open with 0o666 honours the umask, unlike mkstemp's 0o600.
    """
    path = Path(directory) / f"{prefix}{secrets.token_hex(6)}{suffix}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        unlink_quietly(path)
        raise
    return path


def fsync_dir(path: Path) -> None:
    """Make renames/creations/unlinks in `path` durable (a file fsync does not cover them)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    """Remove `path` if it exists; cleanup must not mask the error that triggered it."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
