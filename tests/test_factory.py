"""The Image Factory client against the lab's factory, over real TLS on 127.0.0.1."""

import asyncio
import datetime
import hashlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from omniport.lab.factory import LabFactory
from omniport.providers import errors
from omniport.providers.codec.schematic import (
    Customization,
    ExtensionInfo,
    MetaValue,
    Overlay,
    Schematic,
    SystemExtensions,
    canonical_yaml,
    schematic_id,
)
from omniport.providers.factory import (
    AsyncFactoryClient,
    FactoryClient,
    SchematicStatus,
    _proxy_for,
)
from omniport.providers.timeouts import Timeouts

RPI = Schematic(overlay=Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic"))
RPI_ID = "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9"
ISCSI = ExtensionInfo(
    name="siderolabs/iscsi-tools",
    ref="ghcr.io/siderolabs/iscsi-tools:v0.2.0",
    digest="sha256:" + "ab" * 32,
    author="Sidero Labs",
    description="iSCSI tools",
)
FAST = Timeouts(connect=2.0, call=5.0)
PROXIED_HOST = "factory.lab.test"  # resolvable only by the test proxy


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls() -> tuple[bytes, bytes, bytes]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("omniport test CA"))
        .issuer_name(_name("omniport test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("lab factory"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                    x509.DNSName(PROXIED_HOST),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_cert.public_bytes(pem), cert.public_bytes(pem), key_pem


@pytest.fixture(scope="module")
def tls():
    return make_tls()


@pytest.fixture(scope="module")
def lab(tls):
    ca, cert, key = tls
    factory = LabFactory(
        cert,
        key,
        versions=["v1.9.5", "1.10.3"],
        extensions={"v1.10.3": [ISCSI]},
        schematics=[RPI],
    ).start()
    yield factory
    factory.stop()


@pytest.fixture(autouse=True)
def healthy(request):
    """Every test starts with a healthy factory, whatever the previous one broke."""
    yield
    if "lab" in request.fixturenames:
        factory = request.getfixturevalue("lab")
        factory.set_down(None)
        factory.stall = 0


@pytest.fixture
def client(lab, tls):
    return FactoryClient(lab.url, timeouts=FAST, ca_data=tls[0].decode())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SCHEMATICS = [
    Schematic(),
    Schematic(customization=Customization(extra_kernel_args=("noapic", "nolapic"))),
    Schematic(customization=Customization(meta=(MetaValue(10, '{"externalIPs":["1.2.3.4"]}'),))),
    Schematic(
        customization=Customization(
            system_extensions=SystemExtensions(("siderolabs/gvisor", "siderolabs/amd-ucode")),
            extra_kernel_args=("1", "yes", "net.ifnames=0"),
            embedded_machine_configuration="apiVersion: v1alpha1\nkind: HostnameConfig\n",
        )
    ),
    Schematic(overlay=Overlay(image="img", name="rpi", options={"b": 1, "a10": 2, "a2": "x"})),
]


@pytest.mark.parametrize("schematic", SCHEMATICS, ids=range(len(SCHEMATICS)))
def test_create_answers_the_offline_id_and_get_returns_the_canonical_text(client, schematic):
    created = client.create_schematic(schematic)
    assert created == schematic_id(schematic)
    assert client.create_schematic(schematic) == created  # same content, same ID
    assert client.get_schematic_text(created) == canonical_yaml(schematic)
    assert client.get_schematic(created) == schematic


def test_create_from_text_in_any_layout_gives_the_same_id(client):
    as_json = '{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "meta": []}}'
    as_yaml = "customization:\n  extraKernelArgs:\n  - noapic\n  - nolapic\n"
    assert client.create_schematic(as_json) == client.create_schematic(as_yaml.encode())
    assert client.create_schematic(as_yaml) == (
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"
    )


def test_seeded_schematics_exist_before_any_post(lab, client):
    assert lab.lookup(RPI_ID) == canonical_yaml(RPI)
    assert client.get_schematic(RPI_ID) == RPI


def test_unknown_schematic_is_not_found_naming_the_url(lab, client):
    missing = "0" * 64
    with pytest.raises(errors.NotFound) as info:
        client.get_schematic(missing)
    message = str(info.value)
    assert f"{lab.url}/schematics/{missing}" in message
    assert "HTTP 404" in message and "schematic not found" in message
    assert info.value.code == 404


def test_unknown_field_is_rejected_with_the_factorys_text(lab, client):
    with pytest.raises(errors.InvalidRequest) as info:
        client.create_schematic("something: 1\ncustomization: {}\n")
    message = str(info.value)
    assert "field something not found in type schematic.Schematic" in message
    assert f"{lab.url}/schematics" in message


def test_bad_yaml_and_owner_are_rejected(client):
    with pytest.raises(errors.InvalidRequest, match="yaml: line 1"):
        client.create_schematic("customization: [")
    with pytest.raises(errors.InvalidRequest, match="only supported in Enterprise edition"):
        client.create_schematic(Schematic(owner="alice"))


def test_malformed_ids_are_refused_before_any_request(lab, client):
    before = len(lab.requests)
    with pytest.raises(errors.InvalidRequest, match="not a schematic ID"):
        client.get_schematic("../versions")
    assert len(lab.requests) == before


def test_versions_and_official_extensions(lab, client):
    assert client.versions() == ["v1.9.5", "v1.10.3"]
    assert client.official_extensions("v1.10.3") == [ISCSI]
    assert client.official_extensions("1.10.3") == [ISCSI]
    assert client.official_extensions("v1.9.5") == []
    with pytest.raises(errors.NotFound, match="v1.11.0"):
        client.official_extensions("v1.11.0")
    client.health()


def test_factory_answering_503_is_unreachable_naming_the_url(lab, client):
    lab.set_down("503")
    with pytest.raises(errors.Unreachable) as info:
        client.versions()
    assert f"{lab.url}/versions" in str(info.value)
    assert "HTTP 503" in str(info.value)


def test_factory_refusing_connections_then_recovering(lab, client):
    lab.set_down("refuse")
    with pytest.raises(errors.Unreachable) as info:
        client.get_schematic(RPI_ID)
    assert "connection refused" in str(info.value)
    assert f"{lab.url}/schematics/{RPI_ID}" in str(info.value)
    lab.set_down(None)
    assert client.get_schematic(RPI_ID) == RPI


def test_stalled_answer_times_out_with_the_call_timeout(lab, tls):
    lab.stall = 5
    client = FactoryClient(lab.url, timeouts=Timeouts(connect=2, call=0.2), ca_data=tls[0].decode())
    started = time.monotonic()
    with pytest.raises(errors.Timeout) as info:
        client.versions()
    assert time.monotonic() - started < 2
    assert "timed out waiting for the answer" in str(info.value)
    assert f"{lab.url}/versions" in str(info.value)


def test_stalled_tls_handshake_times_out_with_the_connect_timeout(tls):
    with socket.socket() as listener:  # accepts TCP (kernel backlog) but never speaks TLS
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        client = FactoryClient(url, timeouts=Timeouts(connect=0.2, call=5), ca_data=tls[0].decode())
        started = time.monotonic()
        with pytest.raises(errors.Timeout, match="timed out connecting") as info:
            client.versions()
        assert time.monotonic() - started < 2
        assert url in str(info.value)


def test_unreachable_port(tls):
    url = f"https://127.0.0.1:{free_port()}"
    client = FactoryClient(url, timeouts=FAST, ca_data=tls[0].decode())
    with pytest.raises(errors.Unreachable, match="connection refused") as info:
        client.versions()
    assert f"{url}/versions" in str(info.value)


def test_untrusted_certificate_is_a_tls_failure(lab):
    client = FactoryClient(lab.url, timeouts=FAST)  # system CAs do not know the lab's CA
    with pytest.raises(errors.TLSFailure, match="certificate verify failed|verification"):
        client.versions()


def test_base_url_must_be_http(tls):
    with pytest.raises(errors.InvalidRequest, match="must look like https://"):
        FactoryClient("factory.talos.dev")
    assert FactoryClient("https://user:pw@factory.example.com/").base_url == (
        "https://factory.example.com"
    )


# -- check_schematic: the plan's offline ID check plus a GET, never a POST


def _posts(lab):
    return [r for r in lab.requests if r.method == "POST"]


def test_check_matches_a_known_consistent_schematic(lab, client):
    posts = len(_posts(lab))
    result = client.check_schematic(RPI_ID, canonical_yaml(RPI))
    assert result.status is SchematicStatus.MATCH
    assert result.computed_id == RPI_ID and result.known_to_factory is True
    assert result.schematic == RPI
    assert result.factory_url == lab.url
    assert len(_posts(lab)) == posts


def test_check_reports_a_consistent_schematic_the_factory_does_not_know(lab, client):
    unknown = Schematic(customization=Customization(extra_kernel_args=("only-on-this-node",)))
    posts = len(_posts(lab))
    result = client.check_schematic(unknown.id, canonical_yaml(unknown))
    assert result.status is SchematicStatus.UNKNOWN_TO_FACTORY
    assert result.known_to_factory is False
    assert lab.url in result.detail
    assert len(_posts(lab)) == posts
    assert lab.lookup(unknown.id) is None


def test_check_reports_extra_info_that_hashes_elsewhere(client):
    result = client.check_schematic(RPI_ID, "customization: {}\n")
    assert result.status is SchematicStatus.MISMATCH
    assert result.computed_id == Schematic().id
    assert result.known_to_factory is True
    assert "hashes to" in result.detail


def test_check_reports_unreadable_extra_info(client):
    result = client.check_schematic(RPI_ID, "nonsense: [1\n")
    assert result.status is SchematicStatus.MISMATCH
    assert result.computed_id is None and "cannot be read" in result.detail


def test_check_without_extra_info_relies_on_the_factory(client):
    assert client.check_schematic(RPI_ID, None).status is SchematicStatus.MATCH
    assert client.check_schematic("1" * 64, "").status is SchematicStatus.UNKNOWN_TO_FACTORY


def test_check_of_a_malformed_node_id(client):
    result = client.check_schematic("not-an-id", canonical_yaml(RPI))
    assert result.status is SchematicStatus.MISMATCH
    assert result.known_to_factory is None


def test_check_raises_when_the_factory_is_down(lab, client):
    lab.set_down("503")
    with pytest.raises(errors.Unreachable):
        client.check_schematic(RPI_ID, canonical_yaml(RPI))


# -- asyncio callers, with the lab in the same process


def test_async_client_beside_an_event_loop(lab, tls):
    client = AsyncFactoryClient(base_url=lab.url, timeouts=FAST, ca_data=tls[0].decode())

    async def scenario():
        schematics = [
            Schematic(customization=Customization(extra_kernel_args=(f"arg={i}",)))
            for i in range(6)
        ]
        ids = await asyncio.gather(*(client.create_schematic(s) for s in schematics))
        assert ids == [s.id for s in schematics]
        assert await client.get_schematic(ids[0]) == schematics[0]
        assert await client.get_schematic_text(ids[1]) == canonical_yaml(schematics[1])
        assert await client.versions() == ["v1.9.5", "v1.10.3"]
        assert await client.official_extensions("v1.10.3") == [ISCSI]
        await client.health()
        check = await client.check_schematic(ids[2], canonical_yaml(schematics[2]))
        assert check.status is SchematicStatus.MATCH
        with pytest.raises(errors.NotFound):
            await client.get_schematic("f" * 64)

    asyncio.run(scenario())
    assert client.base_url == lab.url


# -- the lab's wire behaviour seen with a plain HTTPS client


def _raw(lab, tls, method, path, body=None, headers=None):
    context = ssl.create_default_context(cadata=tls[0].decode())
    conn = http.client.HTTPSConnection("127.0.0.1", lab.port, context=context, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_lab_wire_details(lab, tls):
    status, headers, body = _raw(
        lab, tls, "POST", "/schematics", b"customization: {}", {"X-Request-ID": "req-1"}
    )
    assert status == 201 and headers["Content-Type"] == "application/json"
    assert headers["X-Request-ID"] == "req-1"
    assert body.endswith(b"\n")
    assert json.loads(body) == {"id": Schematic().id, "schematic": "customization: {}\n"}

    status, headers, body = _raw(lab, tls, "GET", f"/schematics/{RPI_ID}")
    assert (status, headers["Content-Type"]) == (200, "application/yaml")
    assert body.decode() == canonical_yaml(RPI)
    assert headers["X-Request-ID"]  # generated when the client sends none

    status, headers, body = _raw(lab, tls, "GET", "/schematics/" + "0" * 64)
    assert (status, body) == (404, b"schematic not found\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"

    assert _raw(lab, tls, "GET", "/schematics")[0] == 405
    assert _raw(lab, tls, "GET", "/nowhere")[0] == 404
    assert _raw(lab, tls, "HEAD", "/healthz")[0] == 200
    assert _raw(lab, tls, "GET", "/version/not-a-version/extensions/official")[0] == 500
    assert json.loads(_raw(lab, tls, "GET", "/versions?broken=true")[2]) == []
    assert json.loads(_raw(lab, tls, "GET", "/version/v1.10.3/overlays/official")[2]) == []


def test_lab_fault_names_are_checked(lab):
    with pytest.raises(ValueError, match="unknown factory fault"):
        lab.set_down("flaky")


def test_lab_stops_and_frees_its_port(tls):
    ca, cert, key = tls
    factory = LabFactory(cert, key).start()
    port = factory.port
    factory.stop()
    with socket.socket() as sock:
        with pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))


def test_check_trusts_extra_info_that_hashes_to_the_node_id_byte_for_byte(client):
    # A schematic text whose own SHA-256 is the node's ID is consistent, even if omniport's
    # re-emission of it differed (e.g. a factory on another go-yaml version quoting 'yes').
    text = 'customization:\n    extraKernelArgs:\n        - "yes"\n'  # yaml.v3 style quoting
    node_id = hashlib.sha256(text.encode()).hexdigest()
    assert Schematic(customization=Customization(extra_kernel_args=("yes",))).id != node_id
    result = client.check_schematic(node_id, text)
    assert result.computed_id == node_id
    assert result.status is SchematicStatus.UNKNOWN_TO_FACTORY


class ConnectProxy:
    """A CONNECT-only HTTP proxy on loopback that sends every tunnel to one port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen: list[tuple[str, str | None]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.decode().split("\r\n")
            auth = next(
                (
                    ln.split(":", 1)[1].strip()
                    for ln in lines
                    if ln.lower().startswith("proxy-auth")
                ),
                None,
            )
            self.seen.append((lines[0], auth))
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pump = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
                pump.start()
                _pump(client, upstream)
                pump.join(timeout=5)

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_https_proxy_from_the_environment_with_credentials(lab, tls, monkeypatch):
    proxy = ConnectProxy(lab.port)
    try:
        for name in ("NO_PROXY", "no_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:s%40cret@127.0.0.1:{proxy.port}")
        client = FactoryClient(
            f"https://{PROXIED_HOST}:{lab.port}", timeouts=FAST, ca_data=tls[0].decode()
        )
        assert client.get_schematic(RPI_ID) == RPI
        line, auth = proxy.seen[0]
        assert line == f"CONNECT {PROXIED_HOST}:{lab.port} HTTP/1.0"
        assert auth == "Basic dXNlcjpzQGNyZXQ="  # user:s@cret

        monkeypatch.setenv("NO_PROXY", PROXIED_HOST)
        assert _proxy_for("https", PROXIED_HOST) is None
        assert _proxy_for("https", "127.0.0.1") is None
    finally:
        proxy.close()


def test_lab_factory_imports_only_what_the_lab_may_import():
    import ast
    import pathlib

    import omniport.lab.factory

    tree = ast.parse(pathlib.Path(omniport.lab.factory.__file__).read_text())
    ours = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            ours.add(node.module)
        elif isinstance(node, ast.Import):
            ours.update(alias.name for alias in node.names)
    project = {m for m in ours if m.startswith("omniport.")}
    allowed = (
        "omniport.providers.wire",
        "omniport.providers.codec",
        "omniport.planner.machineconfig",
    )
    assert project and all(m.startswith(allowed) for m in project), project


# --- an older factory's formatting, and an authenticated (Enterprise) factory -----------------

YES = Schematic(
    customization=Customization(meta=(MetaValue(12, "yes"),), extra_kernel_args=("on",))
)
"""Holds YAML 1.1 booleans as strings: factories on yaml.v3 and on v4 quote them differently."""


def wait_for_records(lab: LabFactory, wanted: set[tuple[str, str, int, str]]) -> None:
    """The lab records a request just after answering it: wait until it holds ``wanted``
    (method, path, status, user)."""
    deadline = time.monotonic() + 5
    while not wanted <= {(r.method, r.path, r.status, r.user) for r in lab.requests}:
        assert time.monotonic() < deadline, lab.requests
        time.sleep(0.01)


@pytest.fixture(scope="module")
def v3_lab(tls):
    """A factory that writes canonical text as yaml.v3-era factories did."""
    ca, cert, key = tls
    factory = LabFactory(cert, key, versions=["v1.10.3"], yaml_v3=True).start()
    yield factory
    factory.stop()


def test_check_trusts_the_factory_when_only_formatting_differs(v3_lab, tls):
    node_id = v3_lab.register(YES)
    v3_text = v3_lab.lookup(node_id)
    assert '"yes"' in v3_text and "'yes'" in canonical_yaml(YES)
    assert schematic_id(YES) != node_id  # omniport's emitter quotes it the v4 way
    # the node reports the same schematic, not byte for byte (here: as JSON)
    reported = json.dumps(
        {"customization": {"extraKernelArgs": ["on"], "meta": [{"key": 12, "value": "yes"}]}}
    )
    client = FactoryClient(v3_lab.url, timeouts=FAST, ca_data=tls[0].decode())
    result = client.check_schematic(node_id, reported)
    assert result.status is SchematicStatus.MATCH, result.detail
    assert result.computed_id == node_id and result.offline_id == schematic_id(YES)
    assert "formats it differently" in result.detail
    # and registering the node's content where it came from answers the node's ID
    assert client.create_schematic(reported) == node_id
    wait_for_records(
        v3_lab, {("GET", f"/schematics/{node_id}", 200, ""), ("POST", "/schematics", 201, "")}
    )


def test_check_still_reports_other_content_under_a_known_id(v3_lab, tls):
    node_id = v3_lab.register(YES)
    other = Schematic(customization=Customization(meta=(MetaValue(12, "no"),)))
    client = FactoryClient(v3_lab.url, timeouts=FAST, ca_data=tls[0].decode())
    result = client.check_schematic(node_id, canonical_yaml(other))
    assert result.status is SchematicStatus.MISMATCH
    assert result.known_to_factory is True and result.computed_id == schematic_id(other)


USER, PASSWORD = "omni-instance", "s3cret-factory-password"


@pytest.fixture(scope="module")
def auth_lab(tls):
    ca, cert, key = tls
    factory = LabFactory(
        cert, key, versions=["v1.10.3"], schematics=[RPI], auth=(USER, PASSWORD)
    ).start()
    yield factory
    factory.stop()


@pytest.mark.parametrize(
    "credentials",
    [{}, {"username": USER, "password": "wrong"}, {"username": "other", "password": PASSWORD}],
    ids=["none", "wrong-password", "wrong-user"],
)
def test_authenticated_factory_refuses_other_callers(auth_lab, tls, credentials):
    client = FactoryClient(auth_lab.url, timeouts=FAST, ca_data=tls[0].decode(), **credentials)
    for call in (
        lambda: client.get_schematic_text(RPI_ID),
        lambda: client.create_schematic(Schematic()),
        lambda: client.versions(),
    ):
        with pytest.raises(errors.Unauthenticated) as info:
            call()
        assert info.value.code == 401 and auth_lab.url in str(info.value)
        assert PASSWORD not in str(info.value)
    client.health()  # the probes stay open
    assert Schematic().id not in auth_lab.schematics()


def test_authenticated_factory_serves_its_credentials(auth_lab, tls):
    client = FactoryClient(
        auth_lab.url, timeouts=FAST, ca_data=tls[0].decode(), username=USER, password=PASSWORD
    )
    assert client.authenticated and PASSWORD not in repr(client)
    assert client.check_schematic(RPI_ID, canonical_yaml(RPI)).status is SchematicStatus.MATCH
    assert client.create_schematic(Schematic()) == Schematic().id
    wait_for_records(
        auth_lab, {("GET", f"/schematics/{RPI_ID}", 200, USER), ("POST", "/schematics", 201, USER)}
    )
    # on the wire: basic auth, as Omni's own download client sends it
    conn = http.client.HTTPSConnection(
        "127.0.0.1", auth_lab.port, context=ssl.create_default_context(cadata=tls[0].decode())
    )
    try:
        conn.request("GET", "/versions")
        answer = conn.getresponse()
        assert answer.status == 401 and answer.getheader("WWW-Authenticate", "").startswith("Basic")
        answer.read()
    finally:
        conn.close()
