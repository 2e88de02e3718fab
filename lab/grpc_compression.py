"""gRPC message compression on the lab's grpclib servers, answered the way grpc-go answers.

Omni's Go client sends every request message gzip-compressed (``grpc-encoding: gzip``, the
message's compressed flag set), and Omni, a grpc-go server with gzip registered, accepts that.
grpclib 0.4.9 refuses any compressed message, so the lab's Omni serves through
:class:`CompressingServer` and its handlers read and write messages through :class:`Messages`:

- a request's ``grpc-encoding`` of ``gzip`` (or ``identity``, or none) is accepted; any other
  encoding fails the call UNIMPLEMENTED, ``grpc: Decompressor is not installed for
  grpc-encoding "x"``, before its message is read;
- a message with the compressed flag and no (or identity) encoding fails INTERNAL, ``grpc:
  compressed flag set with identity or empty encoding``; a flag other than 0 or 1 fails
  INTERNAL, ``grpc: received unexpected payload format N``; undecodable gzip fails INTERNAL;
- replies to a gzip request carry ``grpc-encoding: gzip`` in their headers and every non-empty
  message is gzip-compressed (grpc-go answers in the request's encoding and never compresses
  an empty message); a trailers-only reply (an error before any message) has no encoding;
- requests without compression get plain replies, exactly as before.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.protocol import H2Protocol
from grpclib.server import Handler, Server, Stream

__all__ = ["GZIP", "CompressingServer", "Messages"]

GZIP = "gzip"
IDENTITY = "identity"
_ENCODING = "grpc-encoding"
# the attribute on grpclib's protocol stream that carries the request's grpc-encoding
_ATTR = "_lab_grpc_encoding"


class _Handler(Handler):
    """grpclib's per-connection handler, keeping each request's ``grpc-encoding`` header (grpclib
    drops ``grpc-*`` headers from the metadata it hands to the service)."""

    def accept(self, stream: Any, headers: Any, release_stream: Any) -> None:
        encoding = ""
        for key, value in headers:
            if key == _ENCODING:
                encoding = value
        setattr(stream, _ATTR, encoding)
        super().accept(stream, headers, release_stream)


class CompressingServer(Server):
    """A grpclib ``Server`` whose handlers can see each request's message encoding."""

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = _Handler(
            self._mapping, self._codec, self._status_details_codec, self.__dispatch__
        )
        self._handlers.add(handler)
        return H2Protocol(handler, self._config, self._h2_config)


def request_encoding(stream: Stream[Any, Any]) -> str:
    """The ``grpc-encoding`` the client sent ("" when none)."""
    return str(getattr(stream._stream, _ATTR, ""))


class Messages:
    """Receive and send one call's messages, decompressing and compressing as grpc-go does.

    Wraps grpclib's server ``Stream``: it uses that stream's HTTP/2 stream and codec, and keeps
    its bookkeeping (headers sent, message sent) so grpclib ends the call as usual.
    """

    def __init__(self, stream: Stream[Any, Any]) -> None:
        self.stream = stream
        encoding = request_encoding(stream)
        self.encoding = "" if encoding == IDENTITY else encoding

    def check_encoding(self) -> None:
        """Refuse an encoding the server has no decompressor for (before reading anything)."""
        if self.encoding not in ("", GZIP):
            raise GRPCError(
                Status.UNIMPLEMENTED,
                f'grpc: Decompressor is not installed for grpc-encoding "{self.encoding}"',
            )

    @property
    def metadata(self) -> Any:
        """The call's invocation metadata (grpclib's multidict)."""
        return self.stream.metadata

    async def recv_message(self) -> Any:
        """The next request message, or None at the end of the client's stream."""
        stream = self.stream
        self.check_encoding()
        meta = await stream._stream.recv_data(5)
        if not meta:
            return None
        flag, size = meta[0], struct.unpack(">I", meta[1:])[0]
        body = await stream._stream.recv_data(size) if size else b""
        if flag == 1:
            if not self.encoding:
                raise GRPCError(
                    Status.INTERNAL, "grpc: compressed flag set with identity or empty encoding"
                )
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error) as exc:
                raise GRPCError(
                    Status.INTERNAL, f"grpc: failed to decompress the received message: {exc}"
                ) from None
        elif flag != 0:
            raise GRPCError(Status.INTERNAL, f"grpc: received unexpected payload format {flag}")
        message = stream._codec.decode(body, stream._recv_type)
        stream._messages_received += 1
        return message

    async def send_message(self, message: Any) -> None:
        """Send one reply message (compressed when the request was)."""
        stream = self.stream
        if not self.encoding:
            await stream.send_message(message)
            return
        if not stream._send_initial_metadata_done:
            await stream._stream.send_headers(
                [
                    (":status", "200"),
                    ("content-type", stream._content_type),
                    (_ENCODING, self.encoding),
                ]
            )
            stream._send_initial_metadata_done = True
        if not stream._cardinality.server_streaming and stream._send_message_done:
            raise GRPCError(Status.INTERNAL, "a unary call answers with one message")
        body = stream._codec.encode(message, stream._send_type)
        flag = 0
        if body:
            body = gzip.compress(body, compresslevel=6, mtime=0)
            flag = 1
        await stream._stream.send_data(struct.pack(">BI", flag, len(body)) + body)
        stream._send_message_done = True
        stream._messages_sent += 1
