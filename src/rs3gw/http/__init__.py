"""HTTP/1.1 layer: an asyncio protocol over httptools; the S3 layer plugs in one handler."""
from .limits import HttpLimits
from .protocol import Handler
from .request import Body, BodyTooLarge, ClientDisconnected, Request, Response
from .server import HttpServer

__all__ = [
    "Body", "BodyTooLarge", "ClientDisconnected", "Handler", "HttpLimits", "HttpServer",
    "Request", "Response",
]
