"""HTTP/1.1 layer: an asyncio protocol over httptools; the S3 layer plugs in one handler."""
from .request import Body, BodyTooLarge, ClientDisconnected, Request, Response
from .server import HttpLimits, HttpServer

__all__ = [
    "Body", "BodyTooLarge", "ClientDisconnected", "HttpLimits", "HttpServer", "Request",
    "Response",
]
