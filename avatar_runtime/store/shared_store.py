"""An avatar store that several processes open on one directory at once.

The replicas of a deployment (engine_bridge/ray_serve.py) each open the same folder (a
local disk for one machine, a network file system for several). `AvatarStore` keeps an
in-memory index built at open; here every lookup first checks the manifest on disk
(one `stat`, re-read only when its inode or mtime changed), so a put or delete by
another process is seen at once, and cached tensors are dropped when their manifest
changed. Opening removes only leftovers old enough to be a crashed write's, never a put
that another process has in flight.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from avatar_runtime.store.avatar_store import (_ID_PATTERN, _MANIFEST, AvatarStore, _Corrupt, _Entry,
                                               _parse_manifest)

# A put writes its temp files and renames them within a second or two; a leftover this old
# is a crashed write's.
ABANDONED_AFTER_S = 600.0


class SharedAvatarStore(AvatarStore):
    """`AvatarStore` whose index follows the directory, for stores shared between processes."""

    def __init__(self, root: Path | str, cache_size: int = 16, max_avatars: int | None = None):
        self._stamps: dict[str, tuple[int, int, int]] = {}  # id -> its manifest's (inode, mtime, size)
        super().__init__(root, cache_size=cache_size, max_avatars=max_avatars)

    def get(self, avatar_id: str):
        with self._lock:
            if _ID_PATTERN.fullmatch(str(avatar_id)):
                self._sync(avatar_id)  # drops cached tensors another process replaced
        return super().get(avatar_id)

    def list(self) -> list[dict]:
        with self._lock:
            self._rescan()
        return super().list()

    def ids(self) -> list[str]:
        with self._lock:
            self._rescan()
        return super().ids()

    def __len__(self) -> int:
        with self._lock:
            self._rescan()
        return super().__len__()

    # -- hooks of AvatarStore (lock held) ----------------------------------------------
    def _known(self, avatar_id: str) -> bool:
        if _ID_PATTERN.fullmatch(avatar_id):
            self._sync(avatar_id)
        return super()._known(avatar_id)

    def _entry(self, avatar_id: str) -> _Entry:
        self._sync(avatar_id)
        return super()._entry(avatar_id)

    def _check_room(self, avatar_id: str) -> None:
        self._rescan()  # max_avatars counts every process's avatars
        super()._check_room(avatar_id)

    def _commit(self, entry: _Entry, tmp_tensors: Path, tmp_manifest: Path) -> None:
        super()._commit(entry, tmp_tensors, tmp_manifest)
        self._stamps[entry.id] = self._stamp(entry.id)

    def _admit(self, avatar_id: str) -> None:
        super()._admit(avatar_id)
        if avatar_id in self._index:
            self._stamps[avatar_id] = self._stamp(avatar_id)

    def _discard_if_current(self, entry: _Entry, reason: str) -> bool:
        # Tensors that fail their manifest's checksum may be another process's newer put:
        # quarantine only when the manifest on disk is still the one that was read.
        with self._lock:
            self._sync(entry.id)
        return super()._discard_if_current(entry, reason)

    def _abandoned(self, name: str) -> bool:
        try:
            age = time.time() - os.stat(self._dir / name).st_mtime
        except FileNotFoundError:
            return False  # its put finished meanwhile
        return age > ABANDONED_AFTER_S

    # -- following the directory (lock held) -------------------------------------------
    def _stamp(self, avatar_id: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._manifest_path(avatar_id))
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _sync(self, avatar_id: str) -> None:
        """Bring one id's index entry in line with its manifest on disk."""
        stamp = self._stamp(avatar_id)
        if stamp is not None and stamp == self._stamps.get(avatar_id):
            return
        self._cache.pop(avatar_id, None)
        self._index.pop(avatar_id, None)
        self._stamps.pop(avatar_id, None)
        if stamp is None:
            return  # deleted (or never stored)
        try:
            entry = _parse_manifest(self._manifest_path(avatar_id).read_bytes(), avatar_id)
        except (OSError, _Corrupt):
            return  # replaced or deleted while read: the next lookup looks again
        self._index[avatar_id] = entry
        self._stamps[avatar_id] = stamp

    def _rescan(self) -> None:
        """Bring the whole index in line with the manifests on disk."""
        on_disk = {name[:-len(_MANIFEST)] for name in os.listdir(self._dir)
                   if name.endswith(_MANIFEST) and _ID_PATTERN.fullmatch(name[:-len(_MANIFEST)])}
        for avatar_id in on_disk | set(self._index):
            self._sync(avatar_id)
