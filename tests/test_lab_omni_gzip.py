"""The lab's Omni accepts gzip-compressed gRPC messages and answers the way grpc-go does.

Omni's Go client compresses every request (``grpc-encoding: gzip``); grpclib's own client never
does, so these calls are made with a small HTTP/2 client (``h2``, which grpclib runs on) that
writes the frames by hand and reads back the exact headers, message flags and trailers.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events

from omniport.providers.codec import siderov1
from omniport.providers.wire.omni.specs import omni_pb2, system_pb2
from omniport.providers.wire.v1alpha1 import state_pb2
from tests.test_lab_omni import Env, Keys, keys, resource, run

__all__ = ["keys"]  # the module-scoped fixture, shared with test_lab_omni

CLUSTERS = "Clusters.omni.sidero.dev"


@dataclass
class Reply:
    headers: dict[str, str] = field(default_factory=dict)
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return int((self.trailers or self.headers)["grpc-status"])

    @property
    def message(self) -> str:
        return (self.trailers or self.headers).get("grpc-message", "")

    def messages(self) -> list[bytes]:
        return [gzip.decompress(body) if flag else body for flag, body in self.frames]


def frame(body: bytes, *, compress: bool, flag: int | None = None) -> bytes:
    data = gzip.compress(body) if compress else body
    return struct.pack(">BI", (1 if compress else 0) if flag is None else flag, len(data)) + data


async def call(
    env: Env,
    method: str,
    payload: bytes,
    *,
    encoding: str | None = "gzip",
    signed: bool = True,
) -> Reply:
    """One gRPC call on a fresh HTTP/2 connection; ``payload`` is the framed request body."""
    port = env.sim.port
    assert port is not None
    ctx = ssl.create_default_context(cadata=env.keys.cert.decode())
    ctx.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    path = f"/cosi.resource.State/{method}"
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", path),
        (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-accept-encoding", "gzip"),
    ]
    if encoding is not None:
        headers.append(("grpc-encoding", encoding))
    if signed:
        key = siderov1.decode_service_account(env.keys.accounts["Operator"].env_value).key
        headers += siderov1.signed_metadata(path, key, now=time.time())
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers)
    conn.send_data(sid, payload, end_stream=True)
    writer.write(conn.data_to_send())
    reply, buffer, done = Reply(), b"", False
    try:
        while not done:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    reply.headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h2.events.TrailersReceived):
                    reply.trailers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h2.events.DataReceived):
                    buffer += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.StreamEnded):
                    done = True
            writer.write(conn.data_to_send())
    finally:
        writer.close()
    while buffer:
        flag, size = buffer[0], struct.unpack(">I", buffer[1:5])[0]
        reply.frames.append((flag, buffer[5 : 5 + size]))
        buffer = buffer[5 + size :]
    return reply


def get(type_: str, id_: str, ns: str = "default") -> bytes:
    return state_pb2.GetRequest(namespace=ns, type=type_, id=id_).SerializeToString()


def test_gzip_request_gets_a_gzip_reply(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        reply = await call(
            env,
            "Get",
            frame(get("SysVersions.system.sidero.dev", "current", "ephemeral"), compress=True),
        )
        assert reply.status == 0, reply.message
        assert reply.headers["grpc-encoding"] == "gzip"
        assert [flag for flag, _ in reply.frames] == [1]
        got = state_pb2.GetResponse.FromString(reply.messages()[0])
        spec = system_pb2.SysVersionSpec.FromString(got.resource.spec.proto_spec)
        assert spec.backend_api_version == 1 and spec.backend_version

    run(keys, scenario)


def test_plain_request_gets_a_plain_reply(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        for encoding in (None, "identity"):
            reply = await call(
                env,
                "Get",
                frame(get("DefaultJoinTokens.omni.sidero.dev", "default"), compress=False),
                encoding=encoding,
            )
            assert reply.status == 0, reply.message
            assert "grpc-encoding" not in reply.headers
            assert [flag for flag, _ in reply.frames] == [0]

    run(keys, scenario)


def test_gzip_encoding_with_an_uncompressed_message_is_accepted(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        reply = await call(
            env, "Get", frame(get("DefaultJoinTokens.omni.sidero.dev", "default"), compress=False)
        )
        assert reply.status == 0, reply.message
        assert reply.headers["grpc-encoding"] == "gzip"

    run(keys, scenario)


def test_gzip_streams_and_writes(keys: Keys) -> None:
    """A server stream (List) and a write (Create) with gzip; an empty TeardownResponse is
    sent uncompressed, as grpc-go never compresses an empty message."""

    async def scenario(env: Env) -> None:
        req = state_pb2.ListRequest(namespace="default", type="TalosVersions.omni.sidero.dev")
        reply = await call(env, "List", frame(req.SerializeToString(), compress=True))
        assert reply.status == 0, reply.message
        assert len(reply.frames) > 10 and {flag for flag, _ in reply.frames} == {1}
        spec = omni_pb2.ClusterSpec(talos_version="1.11.5", kubernetes_version="1.34.1")
        create = state_pb2.CreateRequest(resource=resource(CLUSTERS, "gz", spec))
        reply = await call(env, "Create", frame(create.SerializeToString(), compress=True))
        assert reply.status == 0, reply.message
        created = state_pb2.CreateResponse.FromString(reply.messages()[0]).resource
        assert created.metadata.id == "gz" and created.metadata.version == "1"
        teardown = state_pb2.TeardownRequest(namespace="default", type=CLUSTERS, id="gz")
        reply = await call(env, "Teardown", frame(teardown.SerializeToString(), compress=True))
        assert reply.status == 0, reply.message
        # the controllers' finalizer is still there: destroy_ready=false, an empty message
        assert reply.frames == [(0, b"")]
        assert env.sim.store.peek("default", CLUSTERS, "gz").phase == "tearingDown"

    run(keys, scenario)


def test_errors_are_trailers_only_without_encoding(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        reply = await call(env, "Get", frame(get(CLUSTERS, "missing"), compress=True))
        assert reply.status == 5 and "doesn't exist" in reply.message
        assert "grpc-encoding" not in reply.headers and not reply.frames

    run(keys, scenario)


def test_compression_errors_as_grpc_go(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        body = get("DefaultJoinTokens.omni.sidero.dev", "default")
        cases: list[tuple[dict[str, Any], bytes, int, str]] = [
            (
                {"encoding": "snappy"},
                frame(body, compress=False),
                12,
                'grpc: Decompressor is not installed for grpc-encoding "snappy"',
            ),
            (
                {"encoding": None},
                frame(body, compress=True),
                13,
                "grpc: compressed flag set with identity or empty encoding",
            ),
            (
                {},
                frame(body, compress=False, flag=2),
                13,
                "grpc: received unexpected payload format 2",
            ),
            (
                {},
                struct.pack(">BI", 1, 4) + b"junk",
                13,
                "grpc: failed to decompress the received message",
            ),
        ]
        for kw, payload, status, text in cases:
            reply = await call(env, "Get", payload, **kw)
            assert (reply.status, text in reply.message) == (status, True), reply.message

    run(keys, scenario)


def test_unsigned_gzip_call_is_unauthenticated(keys: Keys) -> None:
    async def scenario(env: Env) -> None:
        reply = await call(env, "Get", frame(get(CLUSTERS, "x"), compress=True), signed=False)
        assert reply.status == 16, reply.message

    run(keys, scenario)


def test_notifications_are_served_empty(keys: Keys) -> None:
    """omnictl lists Notifications (ephemeral) at start-up when Omni is 1.6 or newer."""

    async def scenario(env: Env) -> None:
        req = state_pb2.ListRequest(namespace="ephemeral", type="Notifications.omni.sidero.dev")
        reply = await call(env, "List", frame(req.SerializeToString(), compress=True))
        assert reply.status == 0, reply.message
        assert reply.frames == []

    run(keys, scenario)
