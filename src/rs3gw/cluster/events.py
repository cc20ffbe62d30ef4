"""Replication events: what one node tells the others about a committed change, and how a receiver
decides what to do with one.

One event class per replicated operation, named after the S3 operation (PutObject also stands for
CompleteMultipartUpload and CopyObject, named in ``source``: the result is an object either way).
Every event carries its id (the origin's HLC timestamp; the origin is its node id), the bucket (and
key), the item's version vector after the write, and the lineage (``created``, see versions.py).

Encoding: ``event.encode()`` is a msgpack-ready map, the unit rs3gw._core.batch frames carry;
``pack_event``/``unpack_event`` give bytes (the replication queue stores those). A PutObject carries
the object's metadata and segment list, never its bytes: the body travels beside it, as the raw
stream after a transport message or as the event's data segment in a batch frame, ``data_length``
bytes long, the segments' bytes in order. Where a node keeps those bytes (a data file, or inline in
its metadata: Segment.inline) is that node's choice and is not replicated.

Replicated items: an object (bucket, key); a bucket (CreateBucket/DeleteBucket); a bucket policy;
a bucket tagging document. Each item has its own version; ``event.item`` names it.

Applying an event twice is harmless: the applier asks ``decide(local, event, resolver)`` inside the
metadata transaction that would apply it and does what the Decision says.
"""
from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from rs3gw.storage import VERSION_KIND, ObjectMeta, Segment, version_item

from .conflicts import ConflictResolver
from .hlc import HLCTimestamp
from .versions import ObjectVersion, VersionVector

EVENT_FORMAT_VERSION = 1
SEGMENTS_MAX = 10_000       # S3's part-count limit


class EventDecodeError(ValueError):
    """Bytes or a map that are not a valid replication event (names what is wrong)."""


# Keys are any S3 key; one decoded from invalid UTF-8 holds lone surrogates, which msgpack's str
# cannot carry. Such keys travel as bytes (surrogatepass), every other key as str.
def _enc_text(s: str) -> str | bytes:
    try:
        s.encode()
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")
    return s


def _dec_text(v: Any, what: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as e:
            raise EventDecodeError(f"{what}: not text") from e
    raise EventDecodeError(f"{what}: expected text, got {type(v).__name__}")


def _want(d: dict[str, Any], k: str, types: type | tuple[type, ...], what: str) -> Any:
    if k not in d:
        raise EventDecodeError(f"{what}: missing")
    v = d[k]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in _as_tuple(types)):
        raise EventDecodeError(f"{what}: bad value {v!r}")
    return v


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _str_map(v: Any, what: str) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise EventDecodeError(f"{what}: expected a map of text")
    return v


@dataclass(frozen=True, kw_only=True)
class ReplicationEvent:
    OP: ClassVar[str] = ""
    ITEM: ClassVar[str] = ""            # kind of replicated item: object|bucket|policy|tagging
    TOMBSTONE: ClassVar[bool] = False

    event_id: HLCTimestamp
    bucket: str
    vector: VersionVector
    created: HLCTimestamp | None = None

    @property
    def origin(self) -> str:
        return self.event_id.node_id

    @property
    def key(self) -> str:
        return ""

    @property
    def item(self) -> tuple[str, str, str]:
        """(kind, bucket, key): what the version is the version of."""
        return (self.ITEM, self.bucket, self.key)

    @property
    def etag(self) -> str:
        return ""

    @property
    def version(self) -> ObjectVersion:
        return ObjectVersion(self.vector, self.event_id, self.origin, self.etag, self.TOMBSTONE,
                             self.created)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": EVENT_FORMAT_VERSION, "op": self.OP, "id": self.event_id.encode(),
                               "b": self.bucket, "vv": self.vector.encode()}
        if self.created is not None and self.created != self.event_id:
            out["c"] = self.created.encode()
        out.update(self._encode_fields())
        return out

    def _encode_fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _decode_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
        return {}


# --- objects ----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class PutObject(ReplicationEvent):
    OP = "PutObject"
    ITEM = "object"
    SOURCES: ClassVar[tuple[str, ...]] = ("PutObject", "CompleteMultipartUpload", "CopyObject")

    meta: ObjectMeta
    source: str = "PutObject"
    # A version of a versioned bucket (meta.version_id set): where it sorts among its key's
    # versions, the same on every replica (stamps.version_seq; b"": the one its id spells).
    seq: bytes = b""

    def __post_init__(self) -> None:
        m = self.meta
        if (m.bucket, m.key) != (self.bucket, self.key):
            raise ValueError("PutObject: meta names another object")
        if self.source not in self.SOURCES:
            raise ValueError(f"PutObject: unknown source {self.source!r}")
        if m.size < 0 or (m.segments and sum(s.size for s in m.segments) != m.size):
            raise ValueError(f"PutObject: segment sizes do not add up to the object size {m.size}")
        if len(m.segments) > SEGMENTS_MAX:
            raise ValueError(f"PutObject: {len(m.segments)} segments, the limit is {SEGMENTS_MAX}")

    @property
    def key(self) -> str:
        return self.meta.key

    @property
    def item(self) -> tuple[str, str, str]:
        if self.meta.version_id is None:
            return (self.ITEM, self.bucket, self.key)
        return (VERSION_KIND, self.bucket, version_item(self.key, self.meta.version_id))

    @property
    def etag(self) -> str:
        return self.meta.etag

    @property
    def data_length(self) -> int:
        """Bytes of object data that travel with this event (the segments, in order)."""
        return self.meta.size

    def _encode_fields(self) -> dict[str, Any]:
        m = self.meta
        meta: dict[str, Any] = {
            "vid": m.vid, "size": m.size, "etag": m.etag, "lm": m.last_modified, "own": m.owner_id,
            "seg": [[s.vid, s.size, s.etag, s.checksums] for s in m.segments]}
        for k, v in (("ct", m.content_type), ("cst", m.checksum_type), ("pc", m.parts_count)):
            if v is not None:
                meta[k] = v
        for k, d in (("h", m.headers), ("cs", m.checksums), ("tg", m.tags)):
            if d:
                meta[k] = d
        if m.version_id is not None:
            meta["ver"] = m.version_id
        if m.delete_marker:
            meta["dm"] = True
        if m.lock_mode is not None or m.legal_hold is not None:
            # Object lock travels with the version: every replica enforces the same retention.
            meta["lk"] = [m.lock_mode, m.lock_until_ms, m.legal_hold]
        out: dict[str, Any] = {"k": _enc_text(m.key), "m": meta}
        if self.source != "PutObject":
            out["src"] = self.source
        if self.seq:
            out["sq"] = self.seq
        return out

    @classmethod
    def _decode_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
        key = _dec_text(d.get("k"), "PutObject key")
        m = _want(d, "m", dict, "PutObject meta")
        segments = []
        for s in _want(m, "seg", list, "PutObject segments"):
            if not (isinstance(s, list) and len(s) == 4 and isinstance(s[0], str)
                    and type(s[1]) is int and s[1] >= 0 and isinstance(s[2], str)):
                raise EventDecodeError(f"PutObject segment: bad value {s!r}")
            segments.append(Segment(s[0], s[1], s[2], _str_map(s[3], "segment checksums")))
        ct, cst, pc = m.get("ct"), m.get("cst"), m.get("pc")
        if not (ct is None or isinstance(ct, str)) or not (cst is None or isinstance(cst, str)) \
                or not (pc is None or (type(pc) is int and pc > 0)):
            raise EventDecodeError("PutObject meta: bad content type, checksum type or parts count")
        size = _want(m, "size", int, "PutObject size")
        lm = _want(m, "lm", (int, float), "PutObject last_modified")
        meta = ObjectMeta(
            bucket=_want(d, "b", str, "bucket"), key=key, vid=_want(m, "vid", str, "PutObject vid"),
            size=size, etag=_want(m, "etag", str, "PutObject etag"), last_modified=float(lm),
            content_type=ct, headers=_str_map(m.get("h", {}), "headers"),
            checksums=_str_map(m.get("cs", {}), "checksums"), checksum_type=cst,
            tags=_str_map(m.get("tg", {}), "tags"), segments=segments, parts_count=pc,
            owner_id=_want(m, "own", str, "PutObject owner"),
            version_id=_want(m, "ver", str, "PutObject version id") if "ver" in m else None,
            delete_marker=_want(m, "dm", bool, "PutObject delete marker") if "dm" in m else False)
        lock = m.get("lk")
        if lock is not None:
            if not (isinstance(lock, list) and len(lock) == 3
                    and (lock[0] is None or isinstance(lock[0], str))
                    and (lock[1] is None or type(lock[1]) is int)
                    and (lock[2] is None or isinstance(lock[2], bool))):
                raise EventDecodeError(f"PutObject object lock: bad value {lock!r}")
            meta.lock_mode, meta.lock_until_ms, meta.legal_hold = lock
        seq = _want(d, "sq", bytes, "PutObject seq") if "sq" in d else b""
        return {"meta": meta, "seq": seq,
                "source": _want(d, "src", str, "source") if "src" in d else "PutObject"}


@dataclass(frozen=True, kw_only=True)
class DeleteObject(ReplicationEvent):
    """A tombstone: the object's version after the delete."""
    OP = "DeleteObject"
    ITEM = "object"
    TOMBSTONE = True

    object_key: str
    version_id: str | None = None       # a versioned bucket: the one version that goes

    @property
    def key(self) -> str:
        return self.object_key

    @property
    def item(self) -> tuple[str, str, str]:
        if self.version_id is None:
            return (self.ITEM, self.bucket, self.key)
        return (VERSION_KIND, self.bucket, version_item(self.key, self.version_id))

    def _encode_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": _enc_text(self.object_key)}
        if self.version_id is not None:
            out["ver"] = self.version_id
        return out

    @classmethod
    def _decode_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
        return {"object_key": _dec_text(d.get("k"), "DeleteObject key"),
                "version_id": _want(d, "ver", str, "DeleteObject version id")
                if "ver" in d else None}


# --- buckets and bucket configuration ---------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CreateBucket(ReplicationEvent):
    OP = "CreateBucket"
    ITEM = "bucket"

    owner_id: str
    region: str
    creation_date: float        # epoch seconds, as BucketInfo.created
    # Configuration documents the bucket is born with (object lock and its versioning state).
    configs: dict[str, bytes] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        return f"{self.owner_id}/{self.region}"

    def _encode_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"own": self.owner_id, "rg": self.region, "cd": self.creation_date}
        if self.configs:
            out["cfg"] = dict(self.configs)
        return out

    @classmethod
    def _decode_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
        cfg = _want(d, "cfg", dict, "CreateBucket configs") if "cfg" in d else {}
        if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in cfg.items()):
            raise EventDecodeError("CreateBucket configs: kind -> document bytes expected")
        return {"owner_id": _want(d, "own", str, "owner"), "region": _want(d, "rg", str, "region"),
                "creation_date": float(_want(d, "cd", (int, float), "creation date")),
                "configs": cfg}


@dataclass(frozen=True, kw_only=True)
class DeleteBucket(ReplicationEvent):
    OP = "DeleteBucket"
    ITEM = "bucket"
    TOMBSTONE = True


@dataclass(frozen=True, kw_only=True)
class _PutBucketDocument(ReplicationEvent):
    """A bucket configuration document, as stored in BucketInfo.configs[ITEM]."""
    document: bytes

    @property
    def etag(self) -> str:
        return hashlib.md5(self.document, usedforsecurity=False).hexdigest()

    def _encode_fields(self) -> dict[str, Any]:
        return {"doc": self.document}

    @classmethod
    def _decode_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
        return {"document": _want(d, "doc", bytes, f"{cls.OP} document")}


@dataclass(frozen=True, kw_only=True)
class PutBucketPolicy(_PutBucketDocument):
    OP = "PutBucketPolicy"
    ITEM = "policy"


@dataclass(frozen=True, kw_only=True)
class DeleteBucketPolicy(ReplicationEvent):
    OP = "DeleteBucketPolicy"
    ITEM = "policy"
    TOMBSTONE = True


@dataclass(frozen=True, kw_only=True)
class PutBucketTagging(_PutBucketDocument):
    OP = "PutBucketTagging"
    ITEM = "tagging"


@dataclass(frozen=True, kw_only=True)
class DeleteBucketTagging(ReplicationEvent):
    OP = "DeleteBucketTagging"
    ITEM = "tagging"
    TOMBSTONE = True


# Any other bucket configuration document (versioning state, object lock, lifecycle, ...): one
# pair of events for all of them, the kind travelling with the event.
CONFIG_KIND_MAX = 64


def _config_kind(d: dict[str, Any], op: str) -> str:
    kind = _want(d, "kind", str, f"{op} kind")
    if not kind or len(kind) > CONFIG_KIND_MAX or kind in ("object", "bucket", VERSION_KIND):
        raise EventDecodeError(f"{op}: bad configuration kind {kind!r}")
    return str(kind)


@dataclass(frozen=True, kw_only=True)
class PutBucketConfig(_PutBucketDocument):
    OP = "PutBucketConfig"
    kind: str

    @property
    def item(self) -> tuple[str, str, str]:
        return (self.kind, self.bucket, "")

    def _encode_fields(self) -> dict[str, Any]:
        return {"doc": self.document, "kind": self.kind}

    @classmethod
    def _decode_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
        return {"document": _want(d, "doc", bytes, f"{cls.OP} document"),
                "kind": _config_kind(d, cls.OP)}


@dataclass(frozen=True, kw_only=True)
class DeleteBucketConfig(ReplicationEvent):
    OP = "DeleteBucketConfig"
    TOMBSTONE = True
    kind: str

    @property
    def item(self) -> tuple[str, str, str]:
        return (self.kind, self.bucket, "")

    def _encode_fields(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def _decode_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
        return {"kind": _config_kind(d, cls.OP)}


EVENT_TYPES: dict[str, type[ReplicationEvent]] = {c.OP: c for c in (
    PutObject, DeleteObject, CreateBucket, DeleteBucket, PutBucketPolicy, DeleteBucketPolicy,
    PutBucketTagging, DeleteBucketTagging, PutBucketConfig, DeleteBucketConfig)}


def decode_event(d: Any) -> ReplicationEvent:
    """The event an encode() map describes; EventDecodeError naming the first problem."""
    if not isinstance(d, dict):
        raise EventDecodeError(f"event must be a map, got {type(d).__name__}")
    version = d.get("v")
    if version != EVENT_FORMAT_VERSION:
        raise EventDecodeError(f"event format version {version!r} is not {EVENT_FORMAT_VERSION} "
                               "(a node running another release?)")
    cls = EVENT_TYPES.get(d.get("op"))  # type: ignore[arg-type]
    if cls is None:
        raise EventDecodeError(f"unknown event type {d.get('op')!r}")
    try:
        return cls(event_id=HLCTimestamp.decode(d.get("id")), bucket=_want(d, "b", str, "bucket"),
                   vector=VersionVector.decode(d.get("vv")),
                   created=HLCTimestamp.decode(d["c"]) if "c" in d else None,
                   **cls._decode_fields(d))
    except EventDecodeError:
        raise
    except (ValueError, TypeError) as e:
        raise EventDecodeError(f"{cls.OP}: {e}") from e


def pack_event(event: ReplicationEvent) -> bytes:
    out: bytes = msgpack.packb(event.encode(), use_bin_type=True)
    return out


def unpack_event(blob: bytes) -> ReplicationEvent:
    try:
        d = msgpack.unpackb(blob, raw=False)
    except Exception as e:      # msgpack raises several unrelated types for bad input
        raise EventDecodeError(f"undecodable event: {e}") from e
    return decode_event(d)


# --- what to do with an incoming event --------------------------------------------------------------

class Action(enum.Enum):
    APPLY = "apply"             # incoming supersedes local: store its payload with its version
    SKIP = "skip"               # already have it, or something newer: change nothing
    RESOLVED = "resolved"       # a conflict; Decision.version and .incoming_data say the outcome


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    version: ObjectVersion | None   # the item's version afterwards (None with SKIP: unchanged)
    incoming_data: bool             # store the incoming payload (object data, document, tombstone)
    local: ObjectVersion | None = None

    @property
    def changed(self) -> bool:
        """Anything to write at all (a conflict the local version wins as is changes nothing)."""
        return self.action is not Action.SKIP and self.version != self.local


def decide(local: ObjectVersion | None, incoming: ReplicationEvent | ObjectVersion,
           resolver: ConflictResolver) -> Decision:
    """What the applier does with ``incoming`` given the item's current local version (None: the
    item was never seen; a tombstone counts as a version). Run it in the metadata transaction that
    applies the outcome, so that local cannot change in between.

    - SKIP: incoming is dominated by, or is, the local version (duplicates land here).
    - APPLY: incoming dominates: store its payload under ``version``.
    - RESOLVED: concurrent; if ``incoming_data``, store the incoming payload under ``version``;
      else keep the local payload and, if ``changed``, store ``version`` (a merged vector) for it.
    """
    inc = incoming.version if isinstance(incoming, ReplicationEvent) else incoming
    if local is None:
        return Decision(Action.APPLY, inc, True, None)
    res = resolver.resolve(local, inc)
    if not res.conflict:
        if res.winner is local:
            return Decision(Action.SKIP, None, False, local)
        return Decision(Action.APPLY, inc, True, local)
    takes_incoming = res.winner.same_write(inc) and not res.winner.same_write(local)
    return Decision(Action.RESOLVED, res.winner, takes_incoming, local)
