from typing_extensions import Buffer

backend: str
GIL_RELEASE_MIN_BYTES: int
CHUNK_LINE_BYTES_MAX: int
TRAILER_LINES_MAX: int
TRAILER_SIGNATURE: str
EMPTY_SHA256: str

# ChunkError.kind values.
SIGNATURE: str
INCOMPLETE: str
MALFORMED: str

class ChunkError(Exception):
    kind: str
    message: str
    string_to_sign: str | None
    signature_provided: str | None
    def __init__(self, kind: str, message: str, *, string_to_sign: str | None = None,
                 signature_provided: str | None = None) -> None: ...

class ChunkedDecoder:
    def __init__(self, *, signed: bool, trailer: bool, signing_key: bytes | None = None,
                 seed_signature: str | None = None, amz_date: str | None = None,
                 scope: str | None = None, max_chunk_bytes: int = 16 << 20) -> None: ...
    # Pieces are memoryviews of `data` when it is (a view of) bytes, else bytes copies.
    def feed(self, data: Buffer) -> list[memoryview | bytes]: ...
    def finish(self) -> dict[str, str]: ...
    @property
    def done(self) -> bool: ...
    @property
    def decoded_bytes(self) -> int: ...
