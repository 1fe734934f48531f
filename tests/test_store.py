"""AvatarStore: round trips, restarts, crash recovery, damage handling, limits, threads.

Everything runs against real files in tmp_path; crash tests kill real child processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from avatar_runtime.avatar import Avatar
from avatar_runtime.errors import AvatarNotFound, InvalidArgument, LimitExceeded
from avatar_runtime.store import AvatarStore, avatar_store

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent


def make_avatar(
    avatar_id: str, version: int = 0, texture: int = 32, created_at: float | None = None
) -> Avatar:
    """A `fit`-shaped avatar whose tensors are a pure function of (id, version).

    Crash and thread tests rely on this: an avatar read back is intact exactly when its
    tensors equal `make_avatar(id, meta["version"])`.
    """
    rng = np.random.default_rng([sum(avatar_id.encode()), len(avatar_id), version])
    tensors = {
        "identity": rng.standard_normal(50).astype(np.float32),
        "texture": rng.integers(0, 256, (texture, texture, 3), dtype=np.uint8),
        "expression": rng.random(52).astype(np.float32),
    }
    meta = {"version": version, "fit_error": 0.0125, "source_size": [640, 480], "head_model": "v1"}
    stamp = created_at if created_at is not None else 1_700_000_000.0 + version
    return Avatar(avatar_id, f"head {avatar_id}", "fit", tensors, meta, stamp)


def assert_same_avatar(got: Avatar, want: Avatar) -> None:
    """Equal fields, and tensors equal bit for bit with the same dtype and shape."""
    assert got.summary() == json.loads(json.dumps(want.summary()))
    assert got.tensors.keys() == want.tensors.keys()
    for name, arr in want.tensors.items():
        assert got.tensors[name].dtype == arr.dtype, name
        assert got.tensors[name].shape == arr.shape, name
        assert got.tensors[name].tobytes() == np.ascontiguousarray(arr).tobytes(), name


def assert_intact(store: AvatarStore, avatar_id: str) -> int:
    """Check the stored avatar is one complete version; return that version."""
    got = store.get(avatar_id)
    version = got.meta["version"]
    assert_same_avatar(
        got, make_avatar(avatar_id, version, texture=got.tensors["texture"].shape[0])
    )
    return version


def files_in(root: Path, sub: str = "avatars") -> list[str]:
    return sorted(os.listdir(root / sub)) if (root / sub).exists() else []


def assert_clean_layout(root: Path) -> None:
    """Only committed <id>.json/<id>.safetensors pairs remain: no temps, no orphans."""
    names = files_in(root)
    assert not [n for n in names if n.endswith(".tmp")], names
    stems = {n.rsplit(".", 1)[0] for n in names}
    assert sorted(names) == sorted(
        [f"{s}.json" for s in stems] + [f"{s}.safetensors" for s in stems]
    )


# --- round trips and the basic API ------------------------------------------------------


def test_round_trip_keeps_tensors_and_meta(tmp_path):
    store = AvatarStore(tmp_path)
    avatar = make_avatar("abc123")
    avatar.tensors.update(
        scalar=np.array(2.5, dtype=np.float64),
        transposed=np.arange(12, dtype=np.int16).reshape(3, 4).T,  # non-contiguous view
        mask=np.array([[True, False], [False, True]]),
        empty=np.zeros((0, 3), dtype=np.uint8),
        half=np.linspace(0, 1, 5, dtype=np.float16),
    )
    store.put(avatar)
    assert_same_avatar(store.get("abc123"), avatar)
    assert "abc123" in store and len(store) == 1 and store.ids() == ["abc123"]


def test_meta_round_trips_as_json(tmp_path):
    store = AvatarStore(tmp_path)
    avatar = make_avatar("m1")
    avatar.meta = {"tuple": (1, 2), "nested": {"a": [None, True, 1.5]}, "text": "ü"}
    store.put(avatar)
    assert store.get("m1").meta == {
        "tuple": [1, 2],
        "nested": {"a": [None, True, 1.5]},
        "text": "ü",
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
stored_dtypes = st.sampled_from(
    [
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
    ]
)
tensor_dicts = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda s: s != "__metadata__"),
    hnp.arrays(stored_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(tensors=tensor_dicts, meta=st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_round_trip_property(tensors, meta):
    with tempfile.TemporaryDirectory() as root:
        avatar = Avatar("prop", "p", "fit", tensors, meta, 12.5)
        AvatarStore(root).put(avatar)
        got = AvatarStore(root).get("prop")  # a fresh store: read from disk, not the cache
        assert_same_avatar(got, avatar)
        assert got.meta == meta


def test_returned_avatars_cannot_corrupt_the_cache(tmp_path):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a"))
    first = store.get("a")
    with pytest.raises(ValueError):
        first.tensors["identity"][0] = 99.0  # shared arrays are read-only
    first.meta["version"] = 42
    first.tensors["extra"] = np.zeros(1)
    assert_intact(store, "a")
    assert "extra" not in store.get("a").tensors


def test_restart_sees_all_avatars(tmp_path):
    store = AvatarStore(tmp_path)
    avatars = [make_avatar(f"id{i}", version=i) for i in range(5)]
    for avatar in avatars:
        store.put(avatar)
    reopened = AvatarStore(tmp_path)
    assert reopened.list() == store.list()
    assert reopened.problems == []
    for avatar in avatars:
        assert_same_avatar(reopened.get(avatar.id), avatar)


def test_list_is_sorted_by_created_at(tmp_path):
    store = AvatarStore(tmp_path)
    for avatar_id, stamp in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        store.put(make_avatar(avatar_id, created_at=stamp))
    assert [s["id"] for s in store.list()] == ["a", "b", "c"]
    assert store.ids() == ["a", "b", "c"]
    assert store.list()[0] == make_avatar("a", created_at=1.0).summary()


def test_put_same_id_overwrites(tmp_path):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a", version=1))
    assert_intact(store, "a")  # now cached
    store.put(make_avatar("a", version=2))
    assert assert_intact(store, "a") == 2
    assert len(store) == 1
    assert assert_intact(AvatarStore(tmp_path), "a") == 2
    assert_clean_layout(tmp_path)


def test_delete_removes_files(tmp_path):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a"))
    store.put(make_avatar("b"))
    store.get("a")
    store.delete("a")
    assert "a" not in store and len(store) == 1
    with pytest.raises(AvatarNotFound):
        store.get("a")
    with pytest.raises(AvatarNotFound):
        store.delete("a")
    assert files_in(tmp_path) == ["b.json", "b.safetensors"]
    assert AvatarStore(tmp_path).ids() == ["b"]


def test_unknown_id_raises_avatar_not_found(tmp_path):
    store = AvatarStore(tmp_path)
    with pytest.raises(AvatarNotFound, match="nope"):
        store.get("nope")
    assert "nope" not in store


@pytest.mark.parametrize(
    "bad_id", ["", "../escape", "a/b", "a.b", ".hidden", "x" * 65, "é", "a\n", None, 7]
)
def test_bad_ids_are_rejected(tmp_path, bad_id):
    store = AvatarStore(tmp_path)
    with pytest.raises(InvalidArgument):
        store.get(bad_id)
    with pytest.raises(InvalidArgument):
        store.delete(bad_id)
    with pytest.raises(InvalidArgument):
        store.put(Avatar(bad_id, "n", "fit", make_avatar("ok").tensors))
    assert bad_id not in store and [bad_id] not in store
    assert files_in(tmp_path) == []


def test_longest_allowed_id_works(tmp_path):
    store = AvatarStore(tmp_path)
    avatar_id = "A-_9" * 16
    store.put(make_avatar(avatar_id))
    assert_intact(AvatarStore(tmp_path), avatar_id)


@pytest.mark.parametrize(
    "change",
    [
        {"meta": {"fit_error": np.float32(0.5)}},  # numpy scalar: not JSON
        {"tensors": {"texture": [1, 2, 3]}},
        {"tensors": {"names": np.array(["a", "b"])}},
        {"tensors": {"__metadata__": np.zeros(2)}},  # reserved by safetensors
        {"name": None},
        {"created_at": float("nan")},
    ],
)
def test_unstorable_avatars_are_rejected_without_writing(tmp_path, change):
    store = AvatarStore(tmp_path)
    avatar = make_avatar("a")
    for field, value in change.items():
        setattr(avatar, field, value)
    with pytest.raises(InvalidArgument):
        store.put(avatar)
    assert len(store) == 0 and files_in(tmp_path) == []


def test_constructor_validates_limits(tmp_path):
    with pytest.raises(InvalidArgument):
        AvatarStore(tmp_path, cache_size=-1)
    with pytest.raises(InvalidArgument):
        AvatarStore(tmp_path, max_avatars=-1)


# --- cache and limits ------------------------------------------------------------------


def test_lru_cache_is_bounded_and_evicts_least_recent(tmp_path):
    store = AvatarStore(tmp_path, cache_size=2)
    for i in range(4):
        store.put(make_avatar(f"a{i}"))
    for i in range(4):
        store.get(f"a{i}")
    assert list(store._cache) == ["a2", "a3"]
    store.get("a2")
    store.get("a0")  # evicts a3, the least recently used
    assert list(store._cache) == ["a2", "a0"]
    # A cached avatar is served without touching the disk; an evicted one is not.
    (tmp_path / "avatars" / "a2.safetensors").unlink()
    (tmp_path / "avatars" / "a3.safetensors").unlink()
    assert_intact(store, "a2")
    with pytest.raises(AvatarNotFound):
        store.get("a3")


def test_cache_size_zero_caches_nothing(tmp_path):
    store = AvatarStore(tmp_path, cache_size=0)
    store.put(make_avatar("a"))
    assert_intact(store, "a")
    assert len(store._cache) == 0


def test_max_avatars_limit(tmp_path):
    store = AvatarStore(tmp_path, max_avatars=2)
    store.put(make_avatar("a"))
    store.put(make_avatar("b"))
    with pytest.raises(LimitExceeded, match="max_avatars=2"):
        store.put(make_avatar("c"))
    store.put(make_avatar("a", version=1))  # overwriting is not adding
    assert sorted(store.ids()) == ["a", "b"]
    assert files_in(tmp_path) == ["a.json", "a.safetensors", "b.json", "b.safetensors"]
    store.delete("b")
    store.put(make_avatar("c"))
    assert sorted(AvatarStore(tmp_path, max_avatars=2).ids()) == ["a", "c"]


# --- damage found on disk ----------------------------------------------------------------


def test_torn_write_and_stray_temps_are_cleaned(tmp_path):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a"))
    store.put(make_avatar("b"))
    avatars = tmp_path / "avatars"
    (avatars / "b.json").unlink()  # as if the crash came before the manifest rename
    (avatars / ".a.x1y2z3.safetensors.tmp").write_bytes(b"half a tens")
    (avatars / ".c.abc.json.tmp").write_bytes(b'{"format_ver')
    reopened = AvatarStore(tmp_path)
    assert reopened.ids() == ["a"]
    assert reopened.problems == []
    assert files_in(tmp_path) == ["a.json", "a.safetensors"]
    assert_intact(reopened, "a")


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_tensors_are_quarantined_and_reported(tmp_path, caplog):
    store = AvatarStore(tmp_path)
    for avatar_id in ("a", "b", "c"):
        store.put(make_avatar(avatar_id))
    flip_last_byte(tmp_path / "avatars" / "b.safetensors")
    reopened = AvatarStore(tmp_path)  # same size: only the checksum on read can tell
    with caplog.at_level(logging.WARNING), pytest.raises(AvatarNotFound, match="b"):
        reopened.get("b")
    assert "b.json" in caplog.text and "sha256" in caplog.text
    assert len(reopened.problems) == 1 and reopened.problems[0].startswith("b.json:")
    assert "b" not in reopened and reopened.ids() == ["a", "c"]
    assert_intact(reopened, "a")
    assert_intact(reopened, "c")
    quarantined = files_in(tmp_path, "quarantine")
    assert len(quarantined) == 2 and all(n.startswith("b.") for n in quarantined)
    assert AvatarStore(tmp_path).problems == []  # moved aside: not reported again


def test_truncated_tensors_are_skipped_at_open(tmp_path, caplog):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a"))
    store.put(make_avatar("b"))
    path = tmp_path / "avatars" / "b.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        reopened = AvatarStore(tmp_path)
    assert reopened.ids() == ["a"]
    assert "b.json" in caplog.text and "bytes" in reopened.problems[0]
    assert len(files_in(tmp_path, "quarantine")) == 2
    assert_intact(reopened, "a")


def test_missing_tensors_file_is_skipped(tmp_path):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a"))
    store.put(make_avatar("b"))
    (tmp_path / "avatars" / "b.safetensors").unlink()
    reopened = AvatarStore(tmp_path)
    assert reopened.ids() == ["a"]
    assert reopened.problems == ["b.json: tensors file missing"]
    assert [n.rsplit(".", 1)[1] for n in files_in(tmp_path, "quarantine")] == ["json"]


@pytest.mark.parametrize(
    "manifest",
    [b"\x00\xffnot json", b"[1, 2]", b'{"format_version": 1}', b'{"format_version": 99}', None],
)
def test_bad_manifests_are_skipped(tmp_path, caplog, manifest):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a"))
    store.put(make_avatar("b"))
    avatars = tmp_path / "avatars"
    # None: a well-formed manifest under the wrong name (it says id "a").
    (avatars / "b.json").write_bytes(
        manifest if manifest is not None else (avatars / "a.json").read_bytes()
    )
    with caplog.at_level(logging.WARNING):
        reopened = AvatarStore(tmp_path)
    assert reopened.ids() == ["a"]
    assert len(reopened.problems) == 1 and "b.json" in caplog.text
    assert sorted(n.rsplit(".", 1)[1] for n in files_in(tmp_path, "quarantine")) == [
        "json",
        "safetensors",
    ]
    assert_intact(reopened, "a")


def test_unrelated_files_are_left_alone(tmp_path):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a"))
    (tmp_path / "avatars" / "README.txt").write_text("notes")
    (tmp_path / "avatars" / "not an id.json").write_text("{}")
    reopened = AvatarStore(tmp_path)
    assert reopened.ids() == ["a"] and reopened.problems == []
    assert "README.txt" in files_in(tmp_path)


# --- crashes -------------------------------------------------------------------------------

# The child imports make_avatar from this file so both sides agree on every avatar's bytes.
PUT_FOREVER = """
import itertools, sys
sys.path.insert(0, sys.argv[1])
from test_store import make_avatar
from avatar_runtime.store import AvatarStore
store = AvatarStore(sys.argv[2])
first_step = int(sys.argv[3])
for step in itertools.count(first_step):
    avatar_id = f"a{step % 12:02d}"
    store.put(make_avatar(avatar_id, version=step, texture=128))
    print(avatar_id, step, flush=True)  # only after put returned
"""


def run_until_killed(
    root: Path, first_step: int, acks_before_kill: int, delay: float
) -> list[tuple[str, int]]:
    """Run PUT_FOREVER, SIGKILL it `delay` s after some acknowledged puts; return every ack it sent.

    The parent wakes on each ack, so killing at once would nearly always land before the
    next put touches the disk; a random delay of up to about one put spreads the kills
    over the write, rename and fsync steps.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", PUT_FOREVER, str(TESTS_DIR), str(root), str(first_step)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_DIR,
    )
    lines = []
    try:
        while len(lines) < acks_before_kill:
            line = proc.stdout.readline()
            assert line, f"child died early: {proc.stderr.read()}"
            lines.append(line)
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    lines += proc.stdout.readlines()  # acks still in the pipe were sent before death
    proc.stdout.close()
    proc.stderr.close()
    # A line the kill cut short is no acknowledgement (the parent never read a whole one).
    return [(avatar_id, int(step)) for avatar_id, step in
            (line.split() for line in lines if line.endswith("\n") and len(line.split()) == 2)]


def test_sigkill_during_puts_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(1234)
    known: dict[str, int] = {}  # id -> version the store must hold
    step = 0
    for _ in range(6):
        acks = run_until_killed(tmp_path, step, rng.randint(3, 20), rng.uniform(0, 0.02))
        for avatar_id, version in acks:
            known[avatar_id] = version
        step = acks[-1][1] + 1
        # The put in flight when the child died may or may not have committed.
        in_flight = (f"a{step % 12:02d}", step)
        store = AvatarStore(tmp_path)
        assert store.problems == []
        assert_clean_layout(tmp_path)
        assert set(store.ids()) <= set(known) | {in_flight[0]}
        for avatar_id in store.ids():
            version = assert_intact(store, avatar_id)
            assert version == known.get(avatar_id) or (avatar_id, version) == in_flight
            known[avatar_id] = version
        assert set(known) == set(store.ids())
        step += 1


# Crash (os._exit: no cleanup runs, like SIGKILL) exactly at one rename of a put.
CRASH_AT_RENAME = """
import os, sys
sys.path.insert(0, sys.argv[1])
from test_store import make_avatar
from avatar_runtime.store import AvatarStore
store = AvatarStore(sys.argv[2])
real_replace = os.replace
def crashing_replace(src, dst):
    if str(dst).endswith(sys.argv[3]):
        os._exit(17)
    real_replace(src, dst)
os.replace = crashing_replace
store.put(make_avatar("a", version=2))
"""


@pytest.mark.parametrize("existing", [True, False], ids=["overwrite", "new"])
@pytest.mark.parametrize(
    "crash_before, survivor",
    [(".safetensors", "old"), (".json", "new")],
    ids=["tensors-rename", "manifest-rename"],
)
def test_crash_at_each_rename_leaves_old_or_new(tmp_path, existing, crash_before, survivor):
    if existing:
        AvatarStore(tmp_path).put(make_avatar("a", version=1))
    AvatarStore(tmp_path).put(make_avatar("other"))
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_AT_RENAME, str(TESTS_DIR), str(tmp_path), crash_before],
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
    )
    assert proc.returncode == 17, proc.stderr
    store = AvatarStore(tmp_path)
    assert store.problems == []
    assert_clean_layout(tmp_path)
    assert_intact(store, "other")
    if survivor == "new":  # tensors were published: the temp manifest completes the put
        assert assert_intact(store, "a") == 2
    elif existing:
        assert assert_intact(store, "a") == 1
    else:
        assert "a" not in store


def test_crash_between_delete_steps_completes_the_delete(tmp_path):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a"))
    store.put(make_avatar("b"))
    (tmp_path / "avatars" / "a.json").unlink()  # delete's first step, then "crash"
    reopened = AvatarStore(tmp_path)
    assert reopened.ids() == ["b"] and reopened.problems == []
    assert files_in(tmp_path) == ["b.json", "b.safetensors"]


# --- threads -------------------------------------------------------------------------------


def test_concurrent_puts_and_gets(tmp_path):
    store = AvatarStore(tmp_path, cache_size=3)
    shared = [f"s{i}" for i in range(4)]
    for avatar_id in shared:
        store.put(make_avatar(avatar_id))

    def writer(worker: int) -> None:
        for step in range(20):
            store.put(make_avatar(f"w{worker}-{step}", version=step))
            store.put(make_avatar(shared[step % 4], version=1000 * worker + step))

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(150):
            assert_intact(store, rng.choice(shared))  # never a mix of two puts

    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(writer, w) for w in range(4)] + [
            pool.submit(reader, r) for r in range(6)
        ]
        for future in futures:
            future.result()
    assert len(store) == 4 + 4 * 20 and store.problems == []
    assert len(store._cache) <= 3
    reopened = AvatarStore(tmp_path)
    assert reopened.list() == store.list() and reopened.problems == []
    for avatar_id in reopened.ids():
        assert_intact(reopened, avatar_id)
    for avatar_id in shared:  # the cache must not hold a version a later put replaced
        assert store.get(avatar_id).meta == reopened.get(avatar_id).meta
    assert_clean_layout(tmp_path)


def test_concurrent_puts_respect_max_avatars(tmp_path):
    store = AvatarStore(tmp_path, max_avatars=5)
    barrier = threading.Barrier(12)

    def put(i: int) -> bool:
        barrier.wait()
        try:
            store.put(make_avatar(f"r{i}"))
            return True
        except LimitExceeded:
            return False

    with ThreadPoolExecutor(max_workers=12) as pool:
        stored = list(pool.map(put, range(12)))
    assert sum(stored) == 5 and len(store) == 5
    assert_clean_layout(tmp_path)
    assert len(AvatarStore(tmp_path).ids()) == 5


def test_concurrent_deletes_and_gets(tmp_path):
    store = AvatarStore(tmp_path, cache_size=0)
    ids = [f"d{i}" for i in range(30)]
    for avatar_id in ids:
        store.put(make_avatar(avatar_id))

    def getter() -> None:
        for avatar_id in ids * 3:
            with contextlib.suppress(AvatarNotFound):  # deleted meanwhile: fine
                assert_intact(store, avatar_id)

    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = [pool.submit(getter) for _ in range(4)] + [
            pool.submit(lambda: [store.delete(i) for i in ids])
        ]
        for future in futures:
            future.result()
    assert len(store) == 0 and store.problems == []
    assert files_in(tmp_path) == []


def pause_reads(
    monkeypatch, store: AvatarStore, when: str
) -> tuple[threading.Event, threading.Event]:
    """Make reader threads stop `when` ("before"/"after") reading a tensors file from disk.

    Returns (paused, resume): the reader sets `paused` and waits for `resume`. Only
    threads other than the caller's pause, so the caller's own put runs freely.
    """
    paused, resume, caller = threading.Event(), threading.Event(), threading.current_thread()
    real_path, real_decode = store._tensors_path, avatar_store._decode

    def hold() -> None:
        if threading.current_thread() is not caller:
            paused.set()
            assert resume.wait(10)

    def tensors_path(avatar_id):
        if when == "before":
            hold()
        return real_path(avatar_id)

    def decode(entry, blob):
        if when == "after":
            hold()
        return real_decode(entry, blob)

    monkeypatch.setattr(store, "_tensors_path", tensors_path)
    monkeypatch.setattr(avatar_store, "_decode", decode)
    return paused, resume


@pytest.mark.parametrize("when", ["before", "after"])
def test_get_racing_a_put_neither_quarantines_nor_caches_stale(tmp_path, monkeypatch, when):
    store = AvatarStore(tmp_path)
    store.put(make_avatar("a", version=1))
    paused, resume = pause_reads(monkeypatch, store, when)
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(store.get, "a")
        assert paused.wait(10)
        store.put(make_avatar("a", version=2))
        resume.set()
        # Read before the put's rename: the old version (the get came first). Read after
        # it: new bytes against the old manifest, which must mean "retry", not "corrupt".
        assert reading.result().meta["version"] == (2 if when == "before" else 1)
    assert store.problems == []
    assert assert_intact(store, "a") == 2


# --- one store directory, several processes (the replicas of a deployment) ---------------


def test_shared_stores_on_one_directory_see_each_others_writes(tmp_path):
    from avatar_runtime.store.shared_store import SharedAvatarStore

    first, second = SharedAvatarStore(tmp_path), SharedAvatarStore(tmp_path)
    first.put(make_avatar("aaaa", version=1))
    assert "aaaa" in second and len(second) == 1 and second.ids() == ["aaaa"]
    assert_same_avatar(second.get("aaaa"), make_avatar("aaaa", version=1))  # now cached in second
    first.put(make_avatar("aaaa", version=2))  # an update: second's cached copy is stale
    assert_same_avatar(second.get("aaaa"), make_avatar("aaaa", version=2))
    second.delete("aaaa")
    assert "aaaa" not in first and first.list() == []
    with pytest.raises(AvatarNotFound):
        first.get("aaaa")
    assert not first.put(make_avatar("aaaa", version=3), replace_only=True)  # no resurrection
    assert first.ids() == second.ids() == []


def test_shared_store_counts_every_process_avatars_against_the_limit(tmp_path):
    from avatar_runtime.store.shared_store import SharedAvatarStore

    first, second = SharedAvatarStore(tmp_path, max_avatars=2), SharedAvatarStore(tmp_path, max_avatars=2)
    first.put(make_avatar("aaaa"))
    second.put(make_avatar("bbbb"))
    with pytest.raises(LimitExceeded):
        first.put(make_avatar("cccc"))


def test_opening_a_shared_store_keeps_another_process_put_in_flight(tmp_path):
    from avatar_runtime.store.shared_store import ABANDONED_AFTER_S, SharedAvatarStore

    SharedAvatarStore(tmp_path)
    avatars = tmp_path / "avatars"
    in_flight = avatars / ".aaaa.0123456789ab.safetensors.tmp"
    in_flight.write_bytes(b"being written")
    tensors_first = avatars / "bbbb.safetensors"  # renamed into place, its manifest not yet
    tensors_first.write_bytes(b"tensors")
    crashed = avatars / ".cccc.0123456789ab.json.tmp"
    crashed.write_bytes(b"{")
    old = time.time() - ABANDONED_AFTER_S - 60
    os.utime(crashed, (old, old))
    SharedAvatarStore(tmp_path)
    assert in_flight.exists() and tensors_first.exists() and not crashed.exists()
    AvatarStore(tmp_path)  # the single-process store owns its directory: it clears them all
    assert not in_flight.exists() and not tensors_first.exists()
