"""Every node-to-node message: one typed request class per message type, each with its reply.

On the wire (cluster/transport.py frames) a request is the frame type ``TYPE`` and the body
``wire.encode(request)``: a map of its fields plus ``"v"``, the message's VERSION. Object bytes and
batch frames never sit in a body: they travel as the frame's raw stream (noted per message below).
Errors travel as the transport's ``[code, message]`` (RemoteError), not as replies.

Compatibility during a rolling upgrade (wire.py): a receiver ignores fields it does not know, so a
release may add fields with defaults to any message and still talk to this one; a change an older
node cannot read bumps the message's VERSION, the new release keeps decoding MIN_VERSION..VERSION,
and an old node refuses the unknown version with ``UnsupportedVersion`` (naming the versions it
speaks) instead of guessing. An unknown message type is refused with ``UnknownMessageType``, a body
that does not decode with ``BadMessage``; the serving side counts each (cluster/rpc.py).

Messages, by the component that serves them:

- membership (SWIM): Ping, PingReq, Sync, Gone
- replica receiver: StageObject [+ body stream], CommitStaged, AbortStaged, ApplyEvent [+ body
  stream for a PutObject], ApplyBatch [+ rs3gw._core.batch frame], HeadObject, GetObject
  (reply + the byte range as stream), ListObjects
- upload forwarding (the upload's owner): GetUpload, PutPart [+ part stream], ListParts,
  AbortUpload, CompleteUpload, ListUploads
- anti-entropy: DigestRequest, KeysRequest
- tombstone collection: ForgetTombstone
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from rs3gw.storage import ListEntry, ObjectMeta, PartInfo, UploadInfo, VersionEntry

from . import wire
from .events import ReplicationEvent, decode_event

wire.register_codec(ReplicationEvent, lambda ev: ev.encode(), decode_event)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Reply:
    """Base of every reply."""
    VERSION: ClassVar[int] = 1
    MIN_VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Request(Generic[R]):
    """Base of every request; ``REPLY`` is the class its answer decodes into."""
    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    MIN_VERSION: ClassVar[int] = 1
    REPLY: ClassVar[type[Any]]


@dataclass(frozen=True, slots=True)
class Done(Reply):
    """An answer with nothing in it."""


# --- membership ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One node as gossip carries it (membership.Member without the receiver-side fields)."""
    node_id: str
    host: str
    port: int
    state: str                  # a NodeState value; records with states this release does not
    incarnation: int            # know are skipped by membership, not refused here
    suspect: bool = False
    version: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ack(Reply):
    sender: MemberRecord
    updates: list[MemberRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ping(Request[Ack]):
    TYPE = "swim.ping"
    REPLY = Ack
    sender: MemberRecord
    updates: list[MemberRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PingReqAck(Reply):
    sender: MemberRecord
    ok: bool
    updates: list[MemberRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PingReq(Request[PingReqAck]):
    """Ping ``target`` for me (SWIM's indirect probe)."""
    TYPE = "swim.ping_req"
    REPLY = PingReqAck
    sender: MemberRecord
    target: MemberRecord
    updates: list[MemberRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SyncAck(Reply):
    sender: MemberRecord
    members: list[MemberRecord]
    updates: list[MemberRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sync(Request[SyncAck]):
    """Full-state exchange (push-pull)."""
    TYPE = "swim.sync"
    REPLY = SyncAck
    sender: MemberRecord
    members: list[MemberRecord]


@dataclass(frozen=True, slots=True)
class Gone(Request[Done]):
    """The sender, Leaving, is going now: forget it."""
    TYPE = "swim.gone"
    REPLY = Done
    sender: MemberRecord


# --- replica receiver ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Staged(Reply):
    """The item's current stamp and ETag here (so the coordinator stamps its write over
    everything the replicas know), and the staged body's MD5."""
    sid: str
    stamp: bytes | None
    etag: str | None
    md5: str


@dataclass(frozen=True, slots=True)
class StageObject(Request[Staged]):
    """Stream: the object's body. Hold it uncommitted under a stage id."""
    TYPE = "rep.stage"
    REPLY = Staged
    bucket: str
    key: str
    algos: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Applied(Reply):
    applied: bool


@dataclass(frozen=True, slots=True)
class CommitStaged(Request[Applied]):
    """Apply the PutObject ``event`` to the body staged under ``sid`` (judged first)."""
    TYPE = "rep.commit"
    REPLY = Applied
    sid: str
    event: ReplicationEvent


@dataclass(frozen=True, slots=True)
class AbortStaged(Request[Done]):
    TYPE = "rep.abort"
    REPLY = Done
    sid: str


@dataclass(frozen=True, slots=True)
class ApplyEvent(Request[Applied]):
    """Stage and commit in one step; a PutObject's bytes (its segments in order) as the stream."""
    TYPE = "rep.apply"
    REPLY = Applied
    event: ReplicationEvent


@dataclass(frozen=True, slots=True)
class BatchApplied(Reply):
    """Per event of the frame, in order: applied, skipped (False) or not yet possible (None:
    its bucket's own event has not arrived; the sender retries it)."""
    applied: list[bool | None]


@dataclass(frozen=True, slots=True)
class ApplyBatch(Request[BatchApplied]):
    """Stream: one rs3gw._core.batch frame of events (small object bodies as their data)."""
    TYPE = "rep.batch"
    REPLY = BatchApplied


@dataclass(frozen=True, slots=True)
class ObjectHead(Reply):
    """The key's stamp here and its object's metadata (None: no object, maybe a tombstone).
    ``stale``: GetObject named a stamp the key no longer has (no stream follows)."""
    stamp: bytes | None
    meta: ObjectMeta | None
    stale: bool = False


@dataclass(frozen=True, slots=True)
class HeadObject(Request[ObjectHead]):
    """With ``version_id``: that version (a delete marker too) and its own stamp."""
    TYPE = "rep.head"
    REPLY = ObjectHead
    bucket: str
    key: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class GetObject(Request[ObjectHead]):
    """Reply stream: bytes [start, end] (end None: to the last byte) of the current object, if
    its stamp is still ``stamp`` (None: whatever is current)."""
    TYPE = "rep.get"
    REPLY = ObjectHead
    bucket: str
    key: str
    start: int = 0
    end: int | None = None
    stamp: bytes | None = None
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectsPage(Reply):
    entries: list[ListEntry]
    prefixes: list[str]
    truncated: bool


@dataclass(frozen=True, slots=True)
class ListObjects(Request[ObjectsPage]):
    """One page of this node's keys (the coordinator merges the pages of every node)."""
    TYPE = "rep.list"
    REPLY = ObjectsPage
    bucket: str
    prefix: str = ""
    delimiter: str = ""
    after: str = ""
    max_keys: int = 1000


@dataclass(frozen=True, slots=True)
class VersionsPage(Reply):
    entries: list[VersionEntry]
    prefixes: list[str]
    truncated: bool


@dataclass(frozen=True, slots=True)
class ListVersions(Request[VersionsPage]):
    """One page of this node's versions after (key_marker, marker_order): the coordinator merges
    the pages of every node by (key, order)."""
    TYPE = "rep.versions"
    REPLY = VersionsPage
    bucket: str
    prefix: str = ""
    delimiter: str = ""
    key_marker: str = ""
    marker_order: bytes | None = None
    max_keys: int = 1000


# --- multipart uploads, asked of the node that owns the upload -----------------------------------

@dataclass(frozen=True, slots=True)
class UploadFound(Reply):
    upload: UploadInfo


@dataclass(frozen=True, slots=True)
class GetUpload(Request[UploadFound]):
    TYPE = "mpu.get"
    REPLY = UploadFound
    bucket: str
    upload_id: str


@dataclass(frozen=True, slots=True)
class PartStored(Reply):
    part: PartInfo


@dataclass(frozen=True, slots=True)
class PutPart(Request[PartStored]):
    """Stream: the part's bytes."""
    TYPE = "mpu.part"
    REPLY = PartStored
    bucket: str
    upload_id: str
    part_number: int
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartsPage(Reply):
    parts: list[PartInfo]
    truncated: bool


@dataclass(frozen=True, slots=True)
class ListParts(Request[PartsPage]):
    TYPE = "mpu.parts"
    REPLY = PartsPage
    bucket: str
    upload_id: str
    part_marker: int = 0
    max_parts: int = 1000


@dataclass(frozen=True, slots=True)
class AbortUpload(Request[Done]):
    TYPE = "mpu.abort"
    REPLY = Done
    bucket: str
    upload_id: str


@dataclass(frozen=True, slots=True)
class UploadCompleted(Reply):
    meta: ObjectMeta


@dataclass(frozen=True, slots=True)
class CompleteUpload(Request[UploadCompleted]):
    TYPE = "mpu.complete"
    REPLY = UploadCompleted
    bucket: str
    upload_id: str
    meta: ObjectMeta
    part_numbers: list[int]
    if_match: str | None = None
    if_none_match: bool = False


@dataclass(frozen=True, slots=True)
class UploadsPage(Reply):
    uploads: list[UploadInfo]
    prefixes: list[str]
    truncated: bool


@dataclass(frozen=True, slots=True)
class ListUploads(Request[UploadsPage]):
    """One page of this node's uploads (the asking node merges every node's pages)."""
    TYPE = "mpu.list"
    REPLY = UploadsPage
    bucket: str
    prefix: str = ""
    delimiter: str = ""
    key_marker: str = ""
    upload_id_marker: str = ""
    max_uploads: int = 1000


# --- anti-entropy -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Digests(Reply):
    """One digest per partition (antientropy.PARTITIONS of them), in partition order."""
    digests: list[bytes]


@dataclass(frozen=True, slots=True)
class DigestRequest(Request[Digests]):
    """Digest what both of us should hold (replica sets containing ``sender`` and you)."""
    TYPE = "ae.digest"
    REPLY = Digests
    sender: str


@dataclass(frozen=True, slots=True)
class StampEntry:
    bucket: str
    key: str
    stamp: bytes


@dataclass(frozen=True, slots=True)
class KeyEntries(Reply):
    entries: list[StampEntry]


@dataclass(frozen=True, slots=True)
class KeysRequest(Request[KeyEntries]):
    """The entries of the partitions whose digests differed."""
    TYPE = "ae.keys"
    REPLY = KeyEntries
    sender: str
    partitions: list[int]


# --- tombstone collection -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Forgotten(Reply):
    dropped: bool


@dataclass(frozen=True, slots=True)
class ForgetTombstone(Request[Forgotten]):
    """Drop the key's tombstone if it is still the one with this event id (its HLC sort key)."""
    TYPE = "gc.forget"
    REPLY = Forgotten
    bucket: str
    key: str
    event_key: bytes


REQUESTS: dict[str, type[Request[Any]]] = {c.TYPE: c for c in (
    Ping, PingReq, Sync, Gone,
    StageObject, CommitStaged, AbortStaged, ApplyEvent, ApplyBatch, HeadObject, GetObject,
    ListObjects, ListVersions,
    GetUpload, PutPart, ListParts, AbortUpload, CompleteUpload, ListUploads,
    DigestRequest, KeysRequest, ForgetTombstone)}

__all__ = [
    "REQUESTS",
    "AbortStaged",
    "AbortUpload",
    "Ack",
    "Applied",
    "ApplyBatch",
    "ApplyEvent",
    "BatchApplied",
    "CommitStaged",
    "CompleteUpload",
    "DigestRequest",
    "Digests",
    "Done",
    "ForgetTombstone",
    "Forgotten",
    "GetObject",
    "GetUpload",
    "Gone",
    "HeadObject",
    "KeyEntries",
    "KeysRequest",
    "ListObjects",
    "ListParts",
    "ListUploads",
    "ListVersions",
    "MemberRecord",
    "ObjectHead",
    "ObjectsPage",
    "PartStored",
    "PartsPage",
    "Ping",
    "PingReq",
    "PingReqAck",
    "PutPart",
    "Reply",
    "Request",
    "StageObject",
    "Staged",
    "StampEntry",
    "Sync",
    "SyncAck",
    "UploadCompleted",
    "UploadFound",
    "UploadsPage",
    "VersionsPage",
]
