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

from rs3gw.storage.metadb import UPLOAD_COLUMNS, decode_object_summary, decode_upload
from rs3gw.storage.types import ListEntry, ListPage, UploadInfo

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
