"""Crash-safe on-disk store of avatars with an in-memory LRU cache.

Layout under `root`::

    avatars/<id>.safetensors   the tensors (safetensors format)
    avatars/<id>.json          the manifest: summary, format version, sha256/size of the
                               tensors file, tensor names/shapes/dtypes
    quarantine/                pairs found damaged, moved aside rather than deleted

A put writes both files to fsynced temp files in `avatars/`, then renames the tensors
into place, fsyncs the directory, renames the manifest into place and fsyncs again.
A manifest therefore only ever names a tensors file that is already durable, and an
avatar exists exactly when its manifest does. Opening the store repairs what a crash
can leave behind (see `AvatarStore._recover`).

One store object per root directory: opening removes temp files, which would break a
put in flight in another process using the same root.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from avatar_runtime.avatar import Avatar
from avatar_runtime.durable import fsync_dir, unlink_quietly, write_temp
from avatar_runtime.errors import AvatarNotFound, InternalError, InvalidArgument, LimitExceeded

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TENSORS = ".safetensors"
_MANIFEST = ".json"
_TEMP = ".tmp"
# safetensors keeps its own header under this key; a tensor named so saves but cannot load.
_RESERVED_TENSOR_NAME = "__metadata__"


def check_id(avatar_id: object) -> str:
    """Return `avatar_id` if it is safe to use as a file name, else raise `InvalidArgument`.

    Only ASCII letters, digits, `-` and `_` (at most 64): no separators or dots, so an id
    can never name a path outside the store or collide with a temp file.
    """
    if not isinstance(avatar_id, str) or not _ID_PATTERN.fullmatch(avatar_id):
        raise InvalidArgument(
            f"invalid avatar id {avatar_id!r}: use 1-64 characters from A-Z a-z 0-9 - _"
        )
    return avatar_id


class _Corrupt(Exception):
    """An on-disk avatar that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class _Entry:
    """One committed manifest, as held in the in-memory index."""

    summary: dict  # Avatar.summary() after a JSON round trip
    sha256: str  # of the whole tensors file
    size: int  # bytes of the tensors file
    tensors: dict  # name -> {"dtype": str, "shape": [int, ...]}

    @property
    def id(self) -> str:
        return self.summary["id"]

    def sort_key(self) -> tuple:
        return (self.summary["created_at"], self.id)

    def to_json(self) -> bytes:
        """The manifest file's bytes."""
        doc = {
            "format_version": FORMAT_VERSION,
            "avatar": self.summary,
            "tensors_file": {"sha256": self.sha256, "size": self.size},
            "tensors": self.tensors,
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


# --- encoding and decoding (no file I/O) -------------------------------------------


def _describe(tensors: dict[str, np.ndarray]) -> dict:
    """Names, dtypes and shapes, as stored in the manifest."""
    return {
        name: {"dtype": arr.dtype.name, "shape": list(arr.shape)} for name, arr in tensors.items()
    }


def _normalise_tensors(tensors: object) -> dict[str, np.ndarray]:
    """Check the tensor dict and make every array C-contiguous.

    safetensors writes an array's raw buffer, so a non-contiguous view (a transpose, a
    slice) would be stored scrambled without raising; copying fixes that.
    """
    if not isinstance(tensors, dict):
        raise InvalidArgument(f"avatar tensors must be a dict, got {type(tensors).__name__}")
    out = {}
    for name, arr in tensors.items():
        if not isinstance(name, str) or not name or name == _RESERVED_TENSOR_NAME:
            raise InvalidArgument(f"invalid tensor name {name!r}")
        if not isinstance(arr, np.ndarray):
            raise InvalidArgument(f"tensor {name!r} is {type(arr).__name__}, not a numpy array")
        # copy(order="C") rather than np.ascontiguousarray, which turns 0-d arrays into 1-d.
        out[name] = arr if arr.flags.c_contiguous else arr.copy(order="C")
    return out


def _summary_of(avatar: Avatar) -> dict:
    """`avatar.summary()` as it will read back from JSON, or `InvalidArgument`."""
    for field in ("name", "reconstructor"):
        if not isinstance(getattr(avatar, field), str):
            raise InvalidArgument(f"avatar {field} must be a string")
    created = avatar.created_at
    if (
        isinstance(created, bool)
        or not isinstance(created, (int, float))
        or not math.isfinite(created)
    ):
        raise InvalidArgument(f"avatar created_at must be a finite number, got {created!r}")
    if not isinstance(avatar.meta, dict):
        raise InvalidArgument("avatar meta must be a dict")
    try:
        # Round trip now so the index holds exactly what a reopened store will read.
        return json.loads(json.dumps(avatar.summary()))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"avatar meta is not JSON-serialisable: {exc}") from None


def _encode(avatar: object) -> tuple[bytes, _Entry]:
    """Validate `avatar`; return its tensors file bytes and its index entry."""
    if not isinstance(avatar, Avatar):
        raise InvalidArgument(f"expected an Avatar, got {type(avatar).__name__}")
    check_id(avatar.id)
    summary = _summary_of(avatar)
    tensors = _normalise_tensors(avatar.tensors)
    try:
        blob = safetensors.numpy.save(tensors)
    except (SafetensorError, TypeError, ValueError) as exc:  # e.g. object or str dtypes
        raise InvalidArgument(f"tensors of avatar {avatar.id!r} cannot be stored: {exc}") from None
    entry = _Entry(summary, hashlib.sha256(blob).hexdigest(), len(blob), _describe(tensors))
    return blob, entry


def _entry_problem(entry: _Entry, expected_id: str) -> str | None:
    """Why a parsed manifest cannot be used, or None if it looks sound."""
    s = entry.summary
    if not isinstance(s, dict) or s.get("id") != expected_id:
        return f"manifest is not for id {expected_id!r}"
    if not all(isinstance(s.get(k), str) for k in ("name", "reconstructor")):
        return "manifest lacks name/reconstructor"
    if not isinstance(s.get("created_at"), (int, float)) or not isinstance(s.get("meta"), dict):
        return "manifest lacks created_at/meta"
    if not isinstance(entry.sha256, str) or not isinstance(entry.size, int):
        return "manifest lacks tensors file sha256/size"
    if not isinstance(entry.tensors, dict):
        return "manifest lacks tensor descriptions"
    return None


def _parse_manifest(blob: bytes, expected_id: str) -> _Entry:
    """Parse manifest bytes into an `_Entry`, or raise `_Corrupt` saying what is wrong."""
    try:
        doc = json.loads(blob)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _Corrupt(f"unparsable JSON ({exc})") from None
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if version != FORMAT_VERSION:
        raise _Corrupt(f"unsupported format_version {version!r}")
    try:
        files = doc["tensors_file"]
        entry = _Entry(doc["avatar"], files["sha256"], files["size"], doc["tensors"])
    except (KeyError, TypeError) as exc:
        raise _Corrupt(f"manifest lacks field {exc}") from None
    problem = _entry_problem(entry, expected_id)
    if problem:
        raise _Corrupt(problem)
    return entry


def _decode(entry: _Entry, blob: bytes) -> Avatar:
    """Rebuild the avatar from its manifest entry and tensors file bytes."""
    if len(blob) != entry.size or hashlib.sha256(blob).hexdigest() != entry.sha256:
        raise _Corrupt("tensors file does not match the sha256/size in its manifest")
    try:
        tensors = safetensors.numpy.load(blob)
    except SafetensorError as exc:
        raise _Corrupt(f"unreadable tensors file ({exc})") from None
    if _describe(tensors) != entry.tensors:
        raise _Corrupt("tensor names/shapes/dtypes differ from the manifest")
    for arr in tensors.values():
        # Cached arrays are shared between callers; an in-place edit would leak into all.
        arr.flags.writeable = False
    s = copy.deepcopy(entry.summary)
    return Avatar(s["id"], s["name"], s["reconstructor"], tensors, s["meta"], s["created_at"])


def _detached(avatar: Avatar) -> Avatar:
    """A copy the caller may mutate without touching the cache (arrays stay read-only)."""
    return dataclasses.replace(
        avatar, tensors=dict(avatar.tensors), meta=copy.deepcopy(avatar.meta)
    )


# --- file-system helpers ---------------------------------------------------------------


def _write_temp(directory: Path, avatar_id: str, suffix: str, data: bytes) -> Path:
    """Fsynced temp file `.<id>.<random><suffix>.tmp`: the id in the name lets recovery
    tell which avatar an orphaned temp belonged to."""
    return write_temp(directory, f".{avatar_id}.", suffix + _TEMP, data)


def _temp_owner(name: str) -> str | None:
    """The avatar id encoded in a temp file name (see `_write_temp`), if any."""
    owner = name[1:].split(".", 1)[0] if name.startswith(".") else ""
    return owner if _ID_PATTERN.fullmatch(owner) else None


# --- the store -------------------------------------------------------------------------


class AvatarStore:
    """Durable avatar storage under `root`, safe to share between threads.

    Opening reads manifests only; tensors are read (and their sha256 checked) on the
    first `get` of each avatar and then kept in an LRU cache of `cache_size` avatars.
    Damaged avatars are never raised about at open: they are logged, listed in
    `problems` and moved to `<root>/quarantine/`.
    """

    def __init__(self, root: Path | str, cache_size: int = 16, max_avatars: int | None = None):
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise InvalidArgument(f"cache_size must be an int >= 0, got {cache_size!r}")
        if max_avatars is not None and (
            isinstance(max_avatars, bool) or not isinstance(max_avatars, int) or max_avatars < 0
        ):
            raise InvalidArgument(f"max_avatars must be None or an int >= 0, got {max_avatars!r}")
        self.root = Path(root)
        self.cache_size = cache_size
        self.max_avatars = max_avatars
        self.problems: list[str] = []  # "<file name>: <reason>" for every damaged avatar seen
        self._dir = self.root / "avatars"
        self._quarantine_dir = self.root / "quarantine"
        # One lock guards the index, the cache, `problems` and every rename/unlink of
        # published files. Temp writes (puts) and tensor reads (gets) happen outside it.
        self._lock = threading.Lock()
        self._index: dict[str, _Entry] = {}
        self._cache: OrderedDict[str, Avatar] = OrderedDict()
        self._dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.root)  # a freshly created avatars/ must outlive a power cut too
        self._recover()

    # --- public API ----------------------------------------------------------------

    def put(self, avatar: Avatar, replace_only: bool = False) -> bool:
        """Store `avatar` durably, atomically replacing any avatar with the same id.

        When this returns, the avatar survives a crash. replace_only: store it only if
        its id is stored already (an update must not bring back a deleted avatar);
        returns whether it was stored. Raises `InvalidArgument` for a bad
        id/tensors/meta, `LimitExceeded` when the id is new and `max_avatars` are
        stored, `InternalError` when the disk write fails.
        """
        blob, entry = _encode(avatar)
        with self._lock:
            self._check_room(entry.id)  # fail before spending any I/O
        tmp_tensors = tmp_manifest = None
        try:
            tmp_tensors = _write_temp(self._dir, entry.id, _TENSORS, blob)
            tmp_manifest = _write_temp(self._dir, entry.id, _MANIFEST, entry.to_json())
            with self._lock:
                if replace_only and not self._known(entry.id):
                    return False
                self._check_room(entry.id)  # authoritative: a concurrent put may have filled it
                self._commit(entry, tmp_tensors, tmp_manifest)
                return True
        except OSError as exc:
            raise InternalError(f"could not store avatar {entry.id!r}: {exc}") from exc
        finally:
            self._drop_temps(tmp_tensors, tmp_manifest)

    def get(self, avatar_id: str) -> Avatar:
        """Return the avatar with `avatar_id` (tensors read-only), or raise `AvatarNotFound`.

        A tensors file that fails its checksum is quarantined and reported as not found.
        """
        check_id(avatar_id)
        while True:
            with self._lock:
                if avatar_id in self._cache:
                    self._cache.move_to_end(avatar_id)
                    return _detached(self._cache[avatar_id])
                entry = self._entry(avatar_id)
            try:
                # Read and hash outside the lock: a miss must not stall cache hits.
                avatar = _decode(entry, self._tensors_path(avatar_id).read_bytes())
            except (FileNotFoundError, _Corrupt) as exc:
                reason = str(exc) if isinstance(exc, _Corrupt) else "tensors file missing"
                if self._discard_if_current(entry, reason):
                    raise AvatarNotFound(
                        f"avatar {avatar_id!r} is damaged and was quarantined"
                    ) from exc
                continue  # a put/delete replaced the files while we read: look again
            except OSError as exc:
                raise InternalError(f"could not read avatar {avatar_id!r}: {exc}") from exc
            with self._lock:
                if self._index.get(avatar_id) is entry:  # don't cache a version already replaced
                    self._remember(avatar)
            return _detached(avatar)

    def delete(self, avatar_id: str) -> None:
        """Remove the avatar, or raise `AvatarNotFound`."""
        check_id(avatar_id)
        with self._lock:
            self._entry(avatar_id)
            try:
                # Manifest first: its removal is the commit point. A crash before the
                # tensors go leaves an orphan, which the next open removes.
                self._manifest_path(avatar_id).unlink()
                fsync_dir(self._dir)
            except OSError as exc:
                raise InternalError(f"could not delete avatar {avatar_id!r}: {exc}") from exc
            unlink_quietly(self._tensors_path(avatar_id))
            self._index.pop(avatar_id)
            self._cache.pop(avatar_id, None)

    def list(self) -> list[dict]:
        """Summaries (`Avatar.summary()`) of all avatars, oldest `created_at` first."""
        with self._lock:
            entries = sorted(self._index.values(), key=_Entry.sort_key)
        return [copy.deepcopy(e.summary) for e in entries]

    def ids(self) -> list[str]:
        """Ids of all avatars, in the same order as `list()`."""
        with self._lock:
            return [e.id for e in sorted(self._index.values(), key=_Entry.sort_key)]

    def __contains__(self, avatar_id: object) -> bool:
        if not isinstance(avatar_id, str):  # e.g. an unhashable list: just "not here"
            return False
        with self._lock:
            return self._known(avatar_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    # --- put/get/delete internals (callers hold the lock where noted) -----------------

    def _tensors_path(self, avatar_id: str) -> Path:
        return self._dir / f"{avatar_id}{_TENSORS}"

    def _manifest_path(self, avatar_id: str) -> Path:
        return self._dir / f"{avatar_id}{_MANIFEST}"

    def _known(self, avatar_id: str) -> bool:
        """Whether `avatar_id` is stored. Lock held."""
        return avatar_id in self._index

    def _entry(self, avatar_id: str) -> _Entry:
        """The index entry for `avatar_id`, or `AvatarNotFound`. Lock held."""
        try:
            return self._index[avatar_id]
        except KeyError:
            raise AvatarNotFound(f"no avatar with id {avatar_id!r}") from None

    def _check_room(self, avatar_id: str) -> None:
        """Raise `LimitExceeded` if storing a new `avatar_id` would pass max_avatars. Lock held."""
        full = self.max_avatars is not None and len(self._index) >= self.max_avatars
        if full and avatar_id not in self._index:
            raise LimitExceeded(
                f"max_avatars={self.max_avatars} reached; "
                f"delete an avatar before adding {avatar_id!r}"
            )

    def _commit(self, entry: _Entry, tmp_tensors: Path, tmp_manifest: Path) -> None:
        """Publish a put's temp files and index entry. Lock held.

        The directory fsync between the renames makes the new tensors durable before
        any manifest can name them. If a crash lands between the renames, the temp
        manifest left behind lets the next open finish the put (`_roll_forward`).
        """
        os.replace(tmp_tensors, self._tensors_path(entry.id))
        try:
            fsync_dir(self._dir)
            os.replace(tmp_manifest, self._manifest_path(entry.id))
            fsync_dir(self._dir)
        except BaseException:
            # The old manifest may now describe the new tensors: stop serving this id
            # until a reopen repairs it from the temp manifest.
            self._index.pop(entry.id, None)
            self._cache.pop(entry.id, None)
            raise
        self._index[entry.id] = entry
        # Not caching the caller's object: they may keep mutating it.
        self._cache.pop(entry.id, None)

    @staticmethod
    def _drop_temps(tmp_tensors: Path | None, tmp_manifest: Path | None) -> None:
        """Remove a put's leftover temp files (no-ops after a successful commit).

        A temp manifest whose tensors were already renamed into place is kept: it is the
        record the next open needs to complete the put.
        """
        tensors_published = tmp_tensors is not None and not tmp_tensors.exists()
        if tmp_tensors is not None:
            unlink_quietly(tmp_tensors)
        if tmp_manifest is not None and not tensors_published:
            unlink_quietly(tmp_manifest)

    def _remember(self, avatar: Avatar) -> None:
        """Add a loaded avatar to the LRU cache, evicting the least recent. Lock held."""
        if self.cache_size == 0:
            return
        self._cache[avatar.id] = avatar
        self._cache.move_to_end(avatar.id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _discard_if_current(self, entry: _Entry, reason: str) -> bool:
        """Quarantine a damaged avatar unless a concurrent put/delete already replaced it."""
        with self._lock:
            if self._index.get(entry.id) is not entry:
                return False
            self._reject(entry.id, reason)
            self._index.pop(entry.id)
            self._cache.pop(entry.id, None)
            return True

    # --- recovery at open ----------------------------------------------------------

    def _recover(self) -> None:
        """Repair what a crash can leave, then index every sound manifest.

        Runs before the store is shared, so it does not take the lock.
        """
        names = os.listdir(self._dir)
        temps = [n for n in names if n.endswith(_TEMP) and self._abandoned(n)]
        self._roll_forward(n for n in temps if n.endswith(_MANIFEST + _TEMP))
        for name in temps:
            unlink_quietly(self._dir / name)
        names = set(os.listdir(self._dir))
        for name in sorted(names):
            stem, suffix = os.path.splitext(name)
            if suffix == _MANIFEST and _ID_PATTERN.fullmatch(stem):
                self._admit(stem)
            elif suffix == _TENSORS and f"{stem}{_MANIFEST}" not in names and self._abandoned(name):
                # Tensors without a manifest: a put that crashed before its commit
                # point, or a delete that crashed after it. Either way, not an avatar.
                logger.info("removing uncommitted tensors file %s", name)
                unlink_quietly(self._dir / name)
        fsync_dir(self._dir)

    def _abandoned(self, name: str) -> bool:
        """Whether a temp or manifest-less tensors file in `avatars/` is a crashed write's
        leftover (here: always, as this process is the store's only writer)."""
        return True

    def _roll_forward(self, temp_manifests) -> None:
        """Finish puts that crashed between renaming the tensors and the manifest.

        A complete temp manifest whose sha256 matches the published tensors file is
        exactly what that put would have committed. Partial temps fail to parse or
        match and are left for removal.
        """
        for name in temp_manifests:
            avatar_id = _temp_owner(name)
            if avatar_id is None:
                continue
            try:
                entry = _parse_manifest((self._dir / name).read_bytes(), avatar_id)
                blob = self._tensors_path(avatar_id).read_bytes()
            except (OSError, _Corrupt):
                continue
            if len(blob) != entry.size or hashlib.sha256(blob).hexdigest() != entry.sha256:
                continue
            try:
                os.replace(self._dir / name, self._manifest_path(avatar_id))
                logger.info("completed interrupted put of avatar %s", avatar_id)
            except OSError as exc:
                logger.warning("could not complete interrupted put of %s: %s", avatar_id, exc)

    def _admit(self, avatar_id: str) -> None:
        """Index one manifest after cheap checks (parse, tensors file present, size)."""
        try:
            entry = _parse_manifest(self._manifest_path(avatar_id).read_bytes(), avatar_id)
            size = self._tensors_path(avatar_id).stat().st_size
        except FileNotFoundError:
            self._reject(avatar_id, "tensors file missing")
            return
        except (OSError, _Corrupt) as exc:
            self._reject(avatar_id, str(exc))
            return
        if size != entry.size:
            self._reject(avatar_id, f"tensors file is {size} bytes, manifest says {entry.size}")
            return
        self._index[avatar_id] = entry

    def _reject(self, avatar_id: str, reason: str) -> None:
        """Report a damaged avatar and move its files to quarantine (never delete them)."""
        message = f"{avatar_id}{_MANIFEST}: {reason}"
        logger.warning("skipping avatar: %s", message)
        self.problems.append(message)
        stamp = time.time_ns()  # keeps repeated quarantines of one id apart
        try:
            self._quarantine_dir.mkdir(parents=True, exist_ok=True)
            # Tensors first: interrupted here, the manifest stays and is quarantined on the
            # next open, whereas tensors left alone would be deleted as a torn write.
            for path in (self._tensors_path(avatar_id), self._manifest_path(avatar_id)):
                if path.exists():
                    os.replace(path, self._quarantine_dir / f"{avatar_id}.{stamp}{path.suffix}")
            fsync_dir(self._dir)
        except OSError as exc:
            logger.warning("could not quarantine avatar %s: %s", avatar_id, exc)
