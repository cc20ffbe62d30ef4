"""Listing pages from the sorted key index (objects, multipart uploads), never a directory walk.

Keys are TEXT with BINARY collation, i.e. compared as UTF-8 bytes, which is code point order: the
same order as Python's ``str`` comparison and as S3's. With a delimiter, the keys of one common prefix
are skipped with a single range seek to the smallest string above the group, so a page costs at most
one indexed query per returned item whatever the depth or the group sizes.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rs3gw.storage import versioning
from rs3gw.storage.metadb import UPLOAD_COLUMNS, decode_object_summary, decode_upload
from rs3gw.storage.types import ListEntry, ListPage, UploadInfo, VersionEntry, VersionPage

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``; None if there is
    none (empty prefix, or a prefix made only of U+10FFFF)."""
    chars = list(prefix)
    while chars:
        cp = ord(chars[-1]) + 1
        if cp in _SURROGATES:
            cp = _SURROGATES.stop   # surrogates cannot occur in UTF-8 keys
        if cp <= _MAX_CODE_POINT:
            chars[-1] = chr(cp)
            return "".join(chars)
        chars.pop()
    return None


def group_of(key: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix ``key`` rolls up into, or None if it is listed as itself."""
    if not delimiter or not key.startswith(prefix):
        return None
    i = key.find(delimiter, len(prefix))
    if i < 0:
        return None
    return key[: i + len(delimiter)]


@dataclass(frozen=True)
class Seek:
    """Where the next query starts: after/at ``key``, or strictly after the ordering tuple ``row``."""
    key: str
    inclusive: bool
    row: tuple[Any, ...] | None = None


# fetch(seek, upper_bound_exclusive, limit) -> rows; row[0] is the key.
Fetch = Callable[[Seek, "str | None", int], Sequence[tuple[Any, ...]]]


def _paginate(fetch: Fetch, prefix: str, delimiter: str, start: Seek | None, max_items: int,
              ) -> tuple[list[tuple[Any, ...]], list[str], bool, str | None]:
    """Walk the index from ``start``: (rows listed as themselves, common prefixes, truncated,
    last key or prefix returned). Common prefixes count toward ``max_items``."""
    rows_out: list[tuple[Any, ...]] = []
    prefixes: list[str] = []
    last: str | None = None
    if max_items <= 0 or start is None:
        return rows_out, prefixes, False, None
    upper = prefix_upper_bound(prefix) if prefix else None
    seek = start
    count = 0
    while True:
        # One row more than still fits: its presence alone says the page is truncated.
        rows = fetch(seek, upper, max_items - count + 1)
        for row in rows:
            if count == max_items:
                return rows_out, prefixes, True, last
            key = row[0]
            group = group_of(key, prefix, delimiter)
            count += 1
            if group is None:
                rows_out.append(row)
                last = key
                continue
            prefixes.append(group)
            last = group
            past = prefix_upper_bound(group)
            if past is None:
                return rows_out, prefixes, False, last
            # Seek past the whole group instead of reading it; the rest of this batch may be in it.
            seek = Seek(past, True)
            break
        else:
            # Fewer rows than asked for: the range is exhausted.
            return rows_out, prefixes, False, last
        if count == max_items:
            return rows_out, prefixes, bool(fetch(seek, upper, 1)), last


def _start_seek(prefix: str, delimiter: str, after: str) -> Seek | None:
    """Where a listing resumes; None when nothing can follow ``after``."""
    if after < prefix:
        return Seek(prefix, True)
    group = group_of(after, prefix, delimiter)
    if group is not None:
        # `after` is inside (or is) a common prefix already returned: skip the whole group. A
        # group of U+10FFFF only has nothing above it, so the listing is over.
        past = prefix_upper_bound(group)
        return None if past is None else Seek(past, True)
    return Seek(after, False)


def _key_range_sql(seek: Seek, upper: str | None, params: list[Any]) -> str:
    sql = " AND key >= ?" if seek.inclusive else " AND key > ?"
    params.append(seek.key)
    if upper is not None:
        sql += " AND key < ?"
        params.append(upper)
    return sql


def list_objects(conn: sqlite3.Connection, bucket: str, prefix: str, delimiter: str,
                 after: str, max_keys: int) -> ListPage:
    def fetch(seek: Seek, upper: str | None, limit: int) -> list[tuple[Any, ...]]:
        params: list[Any] = [bucket]
        sql = ("SELECT key, size, etag, last_modified, owner_id, algos, "
               "CASE WHEN owner_id IS NULL THEN meta END FROM objects WHERE bucket = ?"
               + _key_range_sql(seek, upper, params) + " ORDER BY key LIMIT ?")
        params.append(limit)
        return conn.execute(sql, params).fetchall()

    rows, prefixes, truncated, last = _paginate(
        fetch, prefix, delimiter, _start_seek(prefix, delimiter, after), max_keys)
    entries = []
    for key, size, etag, last_modified, owner_id, joined, blob in rows:
        if owner_id is None:
            owner_id, algos = decode_object_summary(blob)   # a row from before the columns
        else:
            algos = joined.split(",") if joined else []
        entries.append(ListEntry(key=key, size=size, etag=etag, last_modified=last_modified,
                                 owner_id=owner_id, checksum_algorithms=algos))
    return ListPage(entries=entries, common_prefixes=prefixes, is_truncated=truncated,
                    next_key=last if truncated else None)


def list_uploads(conn: sqlite3.Connection, bucket: str, prefix: str, delimiter: str,
                 key_marker: str, upload_id_marker: str, max_uploads: int,
                 ) -> tuple[list[UploadInfo], list[str], bool]:
    """Uploads ordered by (key, initiated, upload_id). With ``upload_id_marker`` the listing resumes
    after that upload of ``key_marker``; without it, after every upload of ``key_marker``."""
    def fetch(seek: Seek, upper: str | None, limit: int) -> list[tuple[Any, ...]]:
        params: list[Any] = [bucket]
        if seek.row is not None:
            sql = " AND (key, initiated, upload_id) > (?, ?, ?)"
            params.extend(seek.row[0:3])
            if upper is not None:
                sql += " AND key < ?"
                params.append(upper)
        else:
            sql = _key_range_sql(seek, upper, params)
        query = (f"SELECT key, initiated, {UPLOAD_COLUMNS} FROM uploads WHERE bucket = ?{sql}"
                 " ORDER BY key, initiated, upload_id LIMIT ?")
        params.append(limit)
        # Rows are (key, initiated, upload_id, ...): the ordering tuple, then the upload columns.
        return conn.execute(query, params).fetchall()

    start = _start_seek(prefix, delimiter, key_marker)
    if upload_id_marker and key_marker and start is not None and not start.inclusive:
        found = conn.execute("SELECT initiated FROM uploads WHERE upload_id = ? AND bucket = ?"
                             " AND key = ?", (upload_id_marker, bucket, key_marker)).fetchone()
        if found is not None:
            start = Seek(key_marker, False, (key_marker, found[0], upload_id_marker))
    rows, prefixes, truncated, _ = _paginate(fetch, prefix, delimiter, start, max_uploads)
    return [decode_upload(tuple(r[2:])) for r in rows], prefixes, truncated


# --- ListObjectVersions ---------------------------------------------------------------------------

# A row of the merged version stream: (key, seq, version_id, marker, size, etag, last_modified,
# owner_id, algos, meta blob or None, is_latest).
_VERSION_SELECT = ("SELECT key, seq, version_id, marker, size, etag, last_modified, owner_id, algos, "
                   "CASE WHEN owner_id IS NULL THEN meta END, "
                   # Latest: the newest row of a key with no current object (a delete marker).
                   "seq = (SELECT MAX(v2.seq) FROM versions v2 WHERE v2.bucket = v.bucket "
                   "AND v2.key = v.key) AND NOT EXISTS (SELECT 1 FROM objects o WHERE "
                   "o.bucket = v.bucket AND o.key = v.key) FROM versions v WHERE bucket = ?")
_CURRENT_SELECT = ("SELECT key, last_modified, size, etag, owner_id, algos, "
                   "CASE WHEN owner_id IS NULL THEN meta END, version_id, seq "
                   "FROM objects WHERE bucket = ?")


def _version_fetch(conn: sqlite3.Connection, bucket: str) -> Fetch:
    """Rows in (key ascending, seq descending) order: every row of ``versions``, and every
    objects row (each key's current version, which sorts first in its key). Both sources are
    read from the same seek with the same limit and merged; where one was cut short by the
    limit, nothing past its last row is returned yet (the next call reads on from there)."""

    def fetch(seek: Seek, upper: str | None, limit: int) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        cur = seek
        while len(out) < limit:
            want = limit - len(out)
            vparams: list[Any] = [bucket]
            oparams: list[Any] = [bucket]
            vrows = []
            if cur.row is not None:
                # The rest of the key the cursor is in, then the keys after it: two index ranges
                # (one query with OR between them scans from the bucket's first row: a page deep in
                # a large bucket would cost its depth).
                vrows = _current_below(conn, bucket, cur.row[0], cur.row[1])
                vrows += conn.execute(_VERSION_SELECT + " AND key = ? AND seq < ? ORDER BY seq "
                                      "DESC LIMIT ?", [bucket, cur.row[0], cur.row[1],
                                                       want - len(vrows)]).fetchall()
                after = Seek(cur.row[0], False)
            else:
                after = cur
            vsql = _key_range_sql(after, upper, vparams)
            osql = _key_range_sql(after, upper, oparams)
            if len(vrows) < want:
                vrows += conn.execute(_VERSION_SELECT + vsql + " ORDER BY key, seq DESC LIMIT ?",
                                      [*vparams, want - len(vrows)]).fetchall()
            vfull = len(vrows) == want
            # Past these bounds a source was not read: a key there may still have rows in it.
            vbound = (vrows[-1][0], vrows[-1][1]) if vfull else None
            if vbound is not None:
                osql += " AND key <= ?"          # no use reading objects past the versions read
                oparams.append(vbound[0])
            orows = conn.execute(_CURRENT_SELECT + osql + " ORDER BY key LIMIT ?",
                                 [*oparams, want]).fetchall()
            ofull = len(orows) == want
            obound = orows[-1][0] if ofull else None
            merged: list[tuple[Any, ...]] = []
            for r in vrows:
                if obound is not None and r[0] > obound:
                    break
                merged.append(r)
            for key, lm, size, etag, owner, algos, blob, vid, seq in orows:
                # A current version sorts above every row of its key: at the bound's own key it
                # is still inside what was read.
                if vbound is not None and key > vbound[0]:
                    break
                merged.append((key, versioning.null_seq(lm) if seq is None else bytes(seq),
                               vid or versioning.NULL, 0, size, etag, lm, owner, algos, blob, True))
            merged.sort(key=lambda r: (r[0], _desc(r[1])))
            out.extend(merged[:limit - len(out)])
            if not vfull and not ofull:
                break               # both sources exhausted in this range
            if vbound is not None and (obound is None or vbound[0] <= obound):
                cur = Seek(vbound[0], False, vbound)
            else:
                assert obound is not None
                cur = Seek(obound, False, (obound, b"\0" * versioning.SEQ_BYTES))
        return out
    return fetch


def _current_below(conn: sqlite3.Connection, bucket: str, key: str,
                   seq: bytes) -> list[tuple[Any, ...]]:
    """The key's current version, as a row of the merged stream, if it sorts below ``seq``: a
    version promoted into the objects row (its newer ones deleted) since the cursor passed it
    in versions."""
    row = conn.execute(_CURRENT_SELECT + " AND key = ?", [bucket, key]).fetchone()
    if row is None:
        return []
    k, lm, size, etag, owner, algos, blob, vid, cseq = row
    order = versioning.null_seq(lm) if cseq is None else bytes(cseq)
    if order >= seq:
        return []
    return [(k, order, vid or versioning.NULL, 0, size, etag, lm, owner, algos, blob, True)]


def _desc(seq: bytes) -> bytes:
    return bytes(255 - b for b in seq)


def list_versions(conn: sqlite3.Connection, bucket: str, prefix: str, delimiter: str,
                  key_marker: str, version_id_marker: str, max_keys: int,
                  marker_order: bytes | None = None) -> VersionPage:
    """One page of versions and delete markers, newest first within a key. ``key_marker`` alone
    resumes after every version of that key; with ``version_id_marker``, after that version;
    with ``marker_order`` (a seq: the cluster's merged listing resumes on nodes that may not
    hold the marker version itself), after whatever sorts there."""
    start = _start_seek(prefix, delimiter, key_marker)
    if marker_order is not None and key_marker and start is not None and not start.inclusive:
        start = Seek(key_marker, False, (key_marker, marker_order))
    elif version_id_marker and key_marker and start is not None and not start.inclusive:
        marker = versioning.get_version(conn, bucket, key_marker, version_id_marker)
        if marker is not None:
            start = Seek(key_marker, False, (key_marker, versioning.current_seq(marker)))
        elif (seq := versioning.parse_id(version_id_marker)) is not None:
            # The marker version is gone (deleted between two pages, as a client emptying the
            # bucket page by page does): its id still says where it sorted.
            start = Seek(key_marker, False, (key_marker, seq))
    rows, prefixes, truncated, last = _paginate(_version_fetch(conn, bucket), prefix, delimiter,
                                                start, max_keys)
    entries = []
    for key, seq, vid, marker, size, etag, lm, owner_id, joined, blob, latest in rows:
        if owner_id is None:
            owner_id, algos = decode_object_summary(blob)   # a row from before the columns
        else:
            algos = joined.split(",") if joined else []
        entries.append(VersionEntry(key=key, version_id=vid, is_latest=bool(latest),
                                    delete_marker=bool(marker), size=size, etag=etag,
                                    last_modified=lm, owner_id=owner_id,
                                    checksum_algorithms=algos, order=bytes(seq)))
    next_vid = None
    if truncated and entries and last == entries[-1].key:
        next_vid = entries[-1].version_id
    return VersionPage(entries=entries, common_prefixes=prefixes, is_truncated=truncated,
                       next_key_marker=last if truncated else None,
                       next_version_id_marker=next_vid)
