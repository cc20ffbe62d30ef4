"""Object lock in the storage engine: the rules of storage/objectlock.py as a table, and the
LocalStore enforcing them inside its write transactions (deletes by version id, DeleteObjects,
retention changes, bucket configuration)."""
from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest

from rs3gw.storage import (
    NULL_VERSION,
    OBJECT_LOCK,
    VERSIONING,
    InvalidBucketState,
    LocalStore,
    LockConfig,
    NoSuchVersion,
    ObjectLocked,
    ObjectLockNotEnabled,
    ObjectMeta,
    Segment,
)
from rs3gw.storage import objectlock as ol
from rs3gw.storage.metadb import decode_object, encode_object

NOW = 1_700_000_000_000
LATER = NOW + 60_000
EARLIER = NOW - 1


def _meta(mode: str | None = None, until: int | None = None,
          hold: bool | None = None) -> ObjectMeta:
    return ObjectMeta(bucket="b", key="k", vid="v", size=1, etag="e", last_modified=0.0,
                      version_id="0" * 32, lock_mode=mode, lock_until_ms=until, legal_hold=hold)


# --- the rules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,until,hold,bypass,allowed", [
    (None, None, None, False, True),                       # no lock at all
    (None, None, False, False, True),                      # a legal hold once set, now off
    (None, None, True, True, False),                       # a legal hold: no bypass for it
    ("GOVERNANCE", LATER, None, False, False),
    ("GOVERNANCE", LATER, None, True, True),               # the bypass overrides GOVERNANCE
    ("GOVERNANCE", LATER, True, True, False),              # ... never a legal hold
    ("COMPLIANCE", LATER, None, True, False),              # nobody overrides COMPLIANCE
    ("COMPLIANCE", EARLIER, None, False, True),            # expired: binds nothing
    ("COMPLIANCE", NOW, None, False, True),                # ends at its date
    ("GOVERNANCE", EARLIER, None, False, True),
])
def test_delete_rule(mode: str | None, until: int | None, hold: bool | None, bypass: bool,
                     allowed: bool) -> None:
    meta = _meta(mode, until, hold)
    if allowed:
        ol.check_delete(meta, NOW, bypass)
    else:
        with pytest.raises(ObjectLocked):
            ol.check_delete(meta, NOW, bypass)


def test_a_delete_marker_is_never_locked() -> None:
    marker = _meta("COMPLIANCE", LATER, True)
    marker.delete_marker = True
    ol.check_delete(marker, NOW, False)


@pytest.mark.parametrize("old,new,bypass,allowed", [
    ((None, None), ("COMPLIANCE", LATER), False, True),             # first retention
    (("GOVERNANCE", LATER), ("GOVERNANCE", LATER + 1), False, True),   # extend
    (("GOVERNANCE", LATER), ("GOVERNANCE", LATER), False, True),       # the same again
    (("GOVERNANCE", LATER), ("COMPLIANCE", LATER), False, True),       # stronger mode
    (("GOVERNANCE", LATER), ("GOVERNANCE", LATER - 1), False, False),  # shorten
    (("GOVERNANCE", LATER), ("GOVERNANCE", LATER - 1), True, True),    # ... with the bypass
    (("GOVERNANCE", LATER), (None, None), False, False),               # remove
    (("GOVERNANCE", LATER), (None, None), True, True),
    (("COMPLIANCE", LATER), ("COMPLIANCE", LATER + 1), False, True),   # extend COMPLIANCE
    (("COMPLIANCE", LATER), ("COMPLIANCE", LATER - 1), True, False),   # never shortened
    (("COMPLIANCE", LATER), ("GOVERNANCE", LATER + 1), True, False),   # never weakened
    (("COMPLIANCE", LATER), (None, None), True, False),                # never removed
    (("COMPLIANCE", EARLIER), ("GOVERNANCE", LATER), False, True),     # expired: anything
    (("COMPLIANCE", EARLIER), (None, None), False, True),
])
def test_retention_change_rule(old: tuple[str | None, int | None],
                               new: tuple[str | None, int | None], bypass: bool,
                               allowed: bool) -> None:
    meta = _meta(*old)
    if allowed:
        ol.check_retention_change(meta, new[0], new[1], NOW, bypass)
    else:
        with pytest.raises(ObjectLocked):
            ol.check_retention_change(meta, new[0], new[1], NOW, bypass)


def test_lock_config_values_and_default_retention() -> None:
    assert LockConfig.decode(LockConfig().encode()) == LockConfig()
    cfg = LockConfig("GOVERNANCE", days=3)
    assert LockConfig.decode(cfg.encode()) == cfg
    assert cfg.default_until_ms(NOW) == NOW + 3 * 86_400_000
    assert LockConfig("COMPLIANCE", years=2).default_until_ms(NOW) == NOW + 730 * 86_400_000
    assert LockConfig().default_until_ms(NOW) is None
    for mode, days, years in (("GOVERNANCE", None, None), ("GOVERNANCE", 1, 1), ("OTHER", 1, None),
                              ("GOVERNANCE", 0, None), (None, 1, None)):
        with pytest.raises(ValueError):
            LockConfig(mode, days, years)


def test_bucket_config_rule() -> None:
    assert ol.VERSIONING_KIND == VERSIONING
    ol.check_bucket_config(OBJECT_LOCK, b"{}", "Enabled", False)
    ol.check_bucket_config(OBJECT_LOCK, b"{}", "Enabled", True)       # a new default retention
    ol.check_bucket_config(VERSIONING, b"Enabled", "Enabled", True)
    ol.check_bucket_config(VERSIONING, b"Suspended", "Enabled", False)
    for args in ((OBJECT_LOCK, b"{}", None, False), (OBJECT_LOCK, b"{}", "Suspended", False),
                 (OBJECT_LOCK, None, "Enabled", True), (VERSIONING, b"Suspended", "Enabled", True)):
        with pytest.raises(InvalidBucketState):
            ol.check_bucket_config(*args)


def test_lock_fields_survive_the_row_codec_and_old_rows_have_none() -> None:
    meta = _meta("COMPLIANCE", LATER, True)
    back = decode_object(encode_object(meta)[:8])
    assert (back.lock_mode, back.lock_until_ms, back.legal_hold) == ("COMPLIANCE", LATER, True)
    plain = decode_object(encode_object(_meta())[:8])
    assert (plain.lock_mode, plain.lock_until_ms, plain.legal_hold) == (None, None, None)


# --- the store ------------------------------------------------------------------------------------

_buckets = itertools.count()
Env = tuple[asyncio.AbstractEventLoop, LocalStore]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    loop = asyncio.new_event_loop()
    store = LocalStore(tmp_path_factory.mktemp("objectlock"), durable=False, inline_max_bytes=8)
    loop.run_until_complete(store.open())
    yield loop, store
    loop.run_until_complete(store.close())
    loop.close()


async def _bucket(store: LocalStore, *, lock: bool = True) -> str:
    name = f"lock-{next(_buckets)}"
    await store.create_bucket(name, "o", "us-east-1")
    await store.set_bucket_config(name, VERSIONING, b"Enabled")
    if lock:
        await store.set_bucket_config(name, OBJECT_LOCK, LockConfig().encode())
    return name


async def _put(store: LocalStore, bucket: str, key: str, body: bytes, *,
               mode: str | None = None, until: int | None = None,
               hold: bool | None = None) -> ObjectMeta:
    w = store.begin_write()
    await w.write(body)
    data = await w.finish()
    meta = ObjectMeta(bucket=bucket, key=key, vid="", size=0, etag="", last_modified=0.0,
                      segments=[Segment(data.vid, data.size, data.md5_hex)], owner_id="o",
                      lock_mode=mode, lock_until_ms=until, legal_hold=hold)
    await store.put_object(meta, data)
    assert meta.version_id is not None
    return meta


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_locked_version_refuses_deletion_by_id_but_takes_a_marker(env: Env) -> None:
    loop, store = env

    async def main() -> None:
        b = await _bucket(store)
        far = _now_ms() + 3_600_000
        gov = await _put(store, b, "k", b"governance body", mode="GOVERNANCE", until=far)
        comp = await _put(store, b, "k", b"compliance", mode="COMPLIANCE", until=far)
        held = await _put(store, b, "h", b"held", hold=True)
        for m, bypass in ((gov, False), (comp, False), (comp, True), (held, True)):
            with pytest.raises(ObjectLocked):
                await store.delete_object(b, m.key, m.version_id, bypass_governance=bypass)
        # Without a version id: a delete marker, as S3 does; every version stays.
        marker = await store.delete_object(b, "k")
        assert marker.delete_marker
        for m in (gov, comp, held):
            got = await store.get_object(b, m.key, m.version_id)
            assert got is not None and got.lock_mode == m.lock_mode
        assert (await store.delete_object(b, "k", gov.version_id, bypass_governance=True)
                ).version_id == gov.version_id
        assert await store.get_object(b, "k", gov.version_id) is None
        # DeleteObjects: the locked entries are refused alone; the others go.
        plain = await _put(store, b, "p", b"plain")
        done = await store.delete_objects(b, [("k", comp.version_id), ("p", plain.version_id),
                                              ("h", held.version_id)])
        assert [d.locked for d in done] == [True, False, True]
        assert await store.get_object(b, "p", plain.version_id) is None
        assert await store.get_object(b, "k", comp.version_id) is not None
    loop.run_until_complete(main())


def test_expired_retention_and_released_hold_allow_deletion(env: Env) -> None:
    loop, store = env

    async def main() -> None:
        b = await _bucket(store)
        old = await _put(store, b, "k", b"x", mode="COMPLIANCE", until=_now_ms() - 1)
        held = await _put(store, b, "k", b"y", hold=True)
        await store.delete_object(b, "k", old.version_id)
        await store.set_object_legal_hold(b, "k", held.version_id, False)
        await store.delete_object(b, "k", held.version_id)
        assert await store.get_object(b, "k") is None
    loop.run_until_complete(main())


def test_retention_changes_update_the_version_and_the_current_object(env: Env) -> None:
    loop, store = env

    async def main() -> None:
        b = await _bucket(store)
        first = await _put(store, b, "k", b"first")
        cur = await _put(store, b, "k", b"current")
        until = _now_ms() + 3_600_000
        await store.set_object_retention(b, "k", None, "GOVERNANCE", until)   # the current one
        for got in (await store.get_object(b, "k"), await store.get_object(b, "k", cur.version_id),
                    (await store.lookup_object(b, "k", with_body=True))[1]):
            assert got is not None and (got.lock_mode, got.lock_until_ms) == ("GOVERNANCE", until)
        old = await store.get_object(b, "k", first.version_id)
        assert old is not None and old.lock_mode is None
        with pytest.raises(ObjectLocked):
            await store.set_object_retention(b, "k", cur.version_id, "GOVERNANCE", until - 1)
        await store.set_object_retention(b, "k", cur.version_id, "COMPLIANCE", until)
        with pytest.raises(ObjectLocked):
            await store.set_object_retention(b, "k", cur.version_id, None, None,
                                             bypass_governance=True)
        await store.set_object_legal_hold(b, "k", first.version_id, True)
        old = await store.get_object(b, "k", first.version_id)
        assert old is not None and old.legal_hold is True
        now = await store.get_object(b, "k")
        assert now is not None and now.legal_hold is None and now.lock_mode == "COMPLIANCE"
        with pytest.raises(NoSuchVersion):
            await store.set_object_legal_hold(b, "k", "f" * 32, True)
    loop.run_until_complete(main())


def test_the_null_version_from_before_versioning_can_be_locked(env: Env) -> None:
    loop, store = env

    async def main() -> None:
        name = f"lock-{next(_buckets)}"
        await store.create_bucket(name, "o", "us-east-1")
        w = store.begin_write()
        await w.write(b"old")
        data = await w.finish()
        await store.put_object(ObjectMeta(bucket=name, key="k", vid="", size=0, etag="",
                                          last_modified=0.0, owner_id="o",
                                          segments=[Segment(data.vid, data.size, data.md5_hex)]),
                               data)
        await store.set_bucket_config(name, VERSIONING, b"Enabled")
        await store.set_bucket_config(name, OBJECT_LOCK, LockConfig().encode())
        await store.set_object_legal_hold(name, "k", NULL_VERSION, True)
        with pytest.raises(ObjectLocked):
            await store.delete_object(name, "k", NULL_VERSION)
        await store.set_object_legal_hold(name, "k", NULL_VERSION, False)
        await store.delete_object(name, "k", NULL_VERSION)
        assert await store.get_object(name, "k") is None
    loop.run_until_complete(main())


def test_bucket_configuration_guards(env: Env) -> None:
    loop, store = env

    async def main() -> None:
        plain = f"lock-{next(_buckets)}"
        await store.create_bucket(plain, "o", "us-east-1")
        with pytest.raises(InvalidBucketState):
            await store.set_bucket_config(plain, OBJECT_LOCK, LockConfig().encode())
        b = await _bucket(store)
        for kind, value in ((VERSIONING, b"Suspended"), (OBJECT_LOCK, None)):
            with pytest.raises(InvalidBucketState):
                await store.set_bucket_config(b, kind, value)
        info = await store.get_bucket(b)
        assert info is not None and info.configs[VERSIONING] == b"Enabled"
        unlocked = await _bucket(store, lock=False)
        m = await _put(store, unlocked, "k", b"x")
        with pytest.raises(ObjectLockNotEnabled):
            await store.set_object_legal_hold(unlocked, "k", m.version_id, True)
    loop.run_until_complete(main())


def test_a_retention_racing_a_delete_is_judged_in_commit_order(env: Env) -> None:
    """Both requests are queued together (in either order): whichever the writer runs first
    decides, and a version never ends up both deleted and retained, or retained after a delete
    that succeeded."""
    loop, store = env

    async def main() -> None:
        b = await _bucket(store)
        outcomes = set()
        for i in range(20):
            m = await _put(store, b, f"k{i}", b"x")
            until = _now_ms() + 3_600_000
            retain = store.set_object_retention(b, m.key, m.version_id, "COMPLIANCE", until)
            delete = store.delete_object(b, m.key, m.version_id)
            if i % 2:
                dele, ret = await asyncio.gather(delete, retain, return_exceptions=True)
            else:
                ret, dele = await asyncio.gather(retain, delete, return_exceptions=True)
            left = await store.get_object(b, m.key, m.version_id)
            if isinstance(dele, ObjectLocked):
                assert not isinstance(ret, BaseException)
                assert left is not None and left.lock_mode == "COMPLIANCE"
                outcomes.add("retained")
            else:
                assert not isinstance(dele, BaseException) and isinstance(ret, NoSuchVersion)
                assert left is None
                outcomes.add("deleted")
        assert outcomes == {"retained", "deleted"}
    loop.run_until_complete(main())


def test_lifecycle_deletion_meets_the_same_lock(env: Env) -> None:
    """The lifecycle scanner deletes through delete_if_unchanged: a locked noncurrent version
    refuses (the scanner counts it skipped); expiring the current one only adds a marker."""
    loop, store = env

    async def main() -> None:
        b = await _bucket(store)
        old = await _put(store, b, "k", b"old", mode="GOVERNANCE", until=_now_ms() + 3_600_000)
        cur = await _put(store, b, "k", b"current", hold=True)
        with pytest.raises(ObjectLocked):
            await store.delete_if_unchanged(b, "k", old.version_id or "", old.etag,
                                            old.last_modified, current=False)
        done = await store.delete_if_unchanged(b, "k", cur.version_id or "", cur.etag,
                                               cur.last_modified, current=True)
        assert done is not None and done.delete_marker
        for m in (old, cur):
            assert await store.get_object(b, "k", m.version_id) is not None
    loop.run_until_complete(main())


def test_a_bucket_is_born_with_its_lock_or_not_at_all(env: Env) -> None:
    loop, store = env

    async def run() -> None:
        born = await store.create_bucket("born-locked", "o", "r", {
            VERSIONING: b"Enabled", OBJECT_LOCK: LockConfig().encode()})
        info = await store.get_bucket("born-locked")
        assert info is not None and info.configs == born.configs
        assert set(info.configs) == {VERSIONING, OBJECT_LOCK}
        # A lock without versioning is refused, and the bucket is not created either: one
        # transaction, so no crash can leave it half made.
        with pytest.raises(InvalidBucketState):
            await store.create_bucket("never", "o", "r", {OBJECT_LOCK: LockConfig().encode()})
        assert await store.get_bucket("never") is None
    loop.run_until_complete(run())
