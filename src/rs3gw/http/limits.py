"""HttpLimits: every bound the HTTP layer enforces, in one value the server and its connections share."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HttpLimits:
    max_header_bytes: int = 64 * 1024     # request line + headers
    max_uri_bytes: int = 16 * 1024
    idle_timeout_s: float = 60.0          # keep-alive idle
    request_timeout_s: float = 300.0      # headers deadline; max wait for the next body bytes
    max_concurrent: int = 1024            # requests being handled at once (all connections)
    write_high_water_bytes: int = 4 << 20
    read_high_water_bytes: int = 4 << 20  # pause_reading above this much buffered body
    backlog: int = 1024
