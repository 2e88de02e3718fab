"""The lab process: ``python -m lab.server --dir DIR [options]``.

It builds the world (lab/build.py), starts every listener on 127.0.0.1 with free ports (apid,
Omni, Image Factory, admin), writes the client files into DIR, and only then ``lab.json`` (so a
``lab.json`` naming this pid means "serving"). It runs until SIGTERM or SIGINT, then closes the
listeners and removes ``lab.json``.

With ``--daemon`` it detaches first (fork + setsid, output to ``DIR/lab.log``) and prints the
daemon's pid on stdout, which is how ``omniport lab up`` learns it. A failure before serving is
written, as one sentence, to ``DIR/lab.error`` and the process exits 1.

Files written (all mode 0600 except the CA bundles):

    talosconfig            os:admin client certificate for the cluster (context = cluster name)
    talosconfig-operator   the same with os:operator, talosconfig-reader with os:reader
    omniconfig, omni-ca.pem, service-account.key     the Omni side (when present)
    factory-ca.pem         the Image Factory's CA (when present)
    import.yaml            a ready import spec for this lab
    lab.json               pid, ports, admin token, nodes
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
import secrets as pysecrets
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import yaml

from omniport.lab import build
from omniport.lab.admin import AdminError, AdminServer, Request, change_faults
from omniport.lab.apid import ADMIN, OPERATOR, READER, Apid, server_tls
from omniport.lab.control import LAB_ERROR, LAB_JSON, LAB_LOG
from omniport.lab.factory import LabFactory
from omniport.lab.faults import Faults
from omniport.lab.omni import DEFAULT_OMNI_VERSION, OmniSeed, OmniSim, default_talos_versions
from omniport.lab.omni_access import Role
from omniport.lab.omni_render import release_of
from omniport.lab.world import REBOOT_SECONDS, Lab, Mode, NodeError
from omniport.planner.machineconfig import pki
from omniport.providers.codec import siderov1
from omniport.providers.codec.schematic import ExtensionInfo

LOCK_FILE = ".lab.lock"
SERVICE_ACCOUNT_KEY = "service-account.key"
SERVICE_ACCOUNT_NAME = "omniport-lab"
LAB_CA = "lab-ca.pem"
HOST = "127.0.0.1"


class StartupError(Exception):
    """A reason the lab cannot start, said in one sentence."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lab.server", description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--daemon", action="store_true")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--controlplanes", type=int, default=1)
    p.add_argument("--talos-version", default=build.DEFAULT_TALOS_VERSION)
    p.add_argument("--initial-talos-version", default=build.DEFAULT_INITIAL_TALOS_VERSION)
    p.add_argument("--kubernetes-version", default=None)
    p.add_argument("--initial-kubernetes-version", default=None)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-factory-schematic", action="store_true")
    p.add_argument("--omni-version", default=DEFAULT_OMNI_VERSION)
    p.add_argument("--omni-zstd-dict", default=None)
    p.add_argument("--omni-api-version", type=int, default=1)
    p.add_argument(
        "--omni-join-ms",
        type=float,
        default=None,
        help="how long a node's SideroLink join stays pending before its Link exists",
    )
    p.add_argument(
        "--node-talos-version",
        action="append",
        default=[],
        metavar="ADDRESS=VERSION",
        help="run this node at another Talos version (repeatable)",
    )
    p.add_argument("--omni-machine-api-url", default=None, help="Omni's advertised machine API URL")
    p.add_argument("--omni-join-token", default=None, help="Omni's default join token")
    p.add_argument(
        "--factory-auth",
        action="store_true",
        help="an Enterprise factory: basic auth on every call, credentials in Omni's "
        "ImageFactoryAuth",
    )
    p.add_argument(
        "--factory-yaml-v3",
        action="store_true",
        help="the factory writes canonical YAML as yaml.v3-era factories did",
    )
    p.add_argument(
        "--omni-factory-url",
        default=None,
        help="Omni's primary factory (FeaturesConfig); '' for none (default: the lab's)",
    )
    p.add_argument(
        "--omni-version-factory",
        action="store_true",
        help="record the lab's factory on Omni's TalosVersion of the nodes' Talos version",
    )
    p.add_argument("--omni-secondary-factory-url", default="", help="Omni's secondary factory URL")
    p.add_argument(
        "--schematic-kernel-arg",
        action="append",
        default=[],
        help="an extra kernel argument in the nodes' schematic (repeatable)",
    )
    p.add_argument(
        "--schematic-yaml-v3",
        action="store_true",
        help="the nodes' image came from a yaml.v3-era factory (its schematic ID follows)",
    )
    return p.parse_args(argv)


# ---- files ----


def build_options(args: argparse.Namespace) -> build.BuildOptions:
    """The world's build options from the command line, resolved and checked (StartupError
    names the option at fault)."""
    try:
        options = build.BuildOptions(
            nodes=args.nodes,
            controlplanes=args.controlplanes,
            talos_version=args.talos_version,
            initial_talos_version=args.initial_talos_version,
            kubernetes_version=args.kubernetes_version,
            initial_kubernetes_version=args.initial_kubernetes_version,
            seed=args.seed,
            factory_schematic=not args.no_factory_schematic,
            schematic_kernel_args=tuple(args.schematic_kernel_arg),
            schematic_yaml_v3=args.schematic_yaml_v3,
            node_talos_versions=tuple(
                (address, version)
                for address, _, version in (v.partition("=") for v in args.node_talos_version)
            ),
        ).resolved()
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    try:
        release_of(args.omni_version)
    except ValueError as exc:
        raise StartupError(f"--omni-version: {exc}") from None
    return options


def check_options(argv: list[str]) -> str | None:
    """What is wrong with the lab options ``argv`` (those after ``--dir DIR``), in one
    sentence, or None: every check the lab process makes of its options before it builds
    anything, so that ``omniport lab up`` can refuse bad options before it starts a process."""
    try:
        args = parse_args(["--dir", ".", *argv])
    except SystemExit:
        return "the lab options cannot be parsed: " + " ".join(argv)
    try:
        build_options(args)
        _read_dictionary(args.omni_zstd_dict)
    except StartupError as err:
        return str(err)
    return None


def _read_dictionary(path: str | None) -> bytes | None:
    """Omni's zstd dictionary from ``--omni-zstd-dict`` (checked: a zstd dictionary, ID 1)."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read --omni-zstd-dict {path}: {exc.strerror}") from None
    if data[:4] != b"\x37\xa4\x30\xec" or int.from_bytes(data[4:8], "little") != 1:
        raise StartupError(f"--omni-zstd-dict {path} is not Omni's zstd dictionary (ID 1)")
    return data


def _write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write atomically with ``mode`` (temp file in the same directory, then rename)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def talosconfig(
    cluster: str, endpoint: str, nodes: list[str], ca: bytes, client: pki.CertAndKey
) -> str:
    """A talosconfig as ``talosctl gen config`` writes it, with endpoint and nodes filled in."""
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    doc = {
        "context": cluster,
        "contexts": {
            cluster: {
                "endpoints": [endpoint],
                "nodes": nodes,
                "ca": b64(ca),
                "crt": b64(client.crt),
                "key": b64(client.key),
            }
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def import_spec(
    world: build.World, nodes: list[str], omni: dict[str, Any], factory: dict[str, Any]
) -> str:
    """A ready import spec for this lab (checked by ``planner.spec.load_spec`` in the tests)."""
    o = world.options
    assert o.kubernetes_version and o.initial_kubernetes_version
    spec: dict[str, Any] = {
        "version": 1,
        "talos": {"talosconfig": "./talosconfig", "nodes": nodes},
        "omni": omni,
    }
    if factory:
        spec["imageFactory"] = factory
    spec["versions"] = {
        "talos": o.talos_version.removeprefix("v"),
        "kubernetes": o.kubernetes_version,
        "initialTalos": o.initial_talos_version.removeprefix("v"),
        "initialKubernetes": o.initial_kubernetes_version,
    }
    spec["healthCheck"] = {"enabled": True, "timeout": "1m"}
    header = (
        f"# Import spec for the omniport lab in this directory ({len(nodes)} nodes, "
        f"cluster {o.cluster_name!r}).\n"
    )
    return header + yaml.safe_dump(spec, sort_keys=False)


def _factory_versions(*current: str) -> list[str]:
    """Talos releases the lab factory lists: a recent spread plus the lab's own versions."""
    spread = [f"v1.{minor}.{patch}" for minor in range(8, 14) for patch in (0, 1, 2, 3, 4, 5)]
    wanted = {v if v.startswith("v") else "v" + v for v in current}
    return sorted(set(spread) | wanted, key=build.version_tuple)


def _official_extensions() -> list[ExtensionInfo]:
    out = []
    for name, version, description in build.OFFICIAL_EXTENSIONS:
        digest = hashlib.sha256(f"{name}:{version}".encode()).hexdigest()
        out.append(
            ExtensionInfo(
                name=name,
                ref=f"ghcr.io/{name}:{version}",
                digest=f"sha256:{digest}",
                author="Sidero Labs",
                description=description,
            )
        )
    return out


def _armored_private(env_value: str) -> str:
    """The armored private key inside a service-account value (for the omniconfig keys dir)."""
    return str(json.loads(base64.b64decode(env_value))["pgp_key"])


def _async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await asyncio.get_running_loop().run_in_executor(None, fn)

    return run


# ---- the running lab ----


class LabProcess:
    """Everything one lab process runs; :meth:`start` returns once all listeners serve."""

    def __init__(self, args: argparse.Namespace, directory: Path) -> None:
        self.args = args
        self.dir = directory
        self.token = pysecrets.token_urlsafe(24)
        self.lab: Lab | None = None
        self.apid: Apid | None = None
        self.admin: AdminServer | None = None
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.factory: LabFactory | None = None
        self.factory_auth: tuple[str, str] | None = None
        self.started = time.monotonic()

    async def start(self) -> dict[str, Any]:
        args = self.args
        now = dt.datetime.now(dt.UTC)
        options = build_options(args)
        # One CA for the lab's HTTPS services (Image Factory, Omni); clients get lab-ca.pem.
        self.web_ca = pki.new_ca(
            now, organizations=["omniport lab"], algorithm=pki.KeyAlgorithm.ECDSA_P256
        )
        web = pki.issue(
            self.web_ca,
            now,
            validity=dt.timedelta(days=30),
            common_name="omniport lab",
            ip_addresses=[HOST],
            dns_names=["localhost"],
            server_auth=True,
        )
        _write(self.dir / LAB_CA, self.web_ca.crt, 0o644)
        if args.factory_auth:
            self.factory_auth = ("omni-lab", secrets.token_urlsafe(24))
        factory = LabFactory(
            web.crt,
            web.key,
            host=HOST,
            versions=_factory_versions(options.talos_version, options.initial_talos_version),
            extensions={
                v: _official_extensions()
                for v in (options.talos_version, options.initial_talos_version)
            },
            auth=self.factory_auth,
            yaml_v3=args.factory_yaml_v3,
        ).start()
        self.factory = factory
        self.closers.append(_async(factory.stop))
        try:
            world = build.build_world(replace(options, factory_url=factory.url), now=now)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        if world.schematic is not None:
            # the image's factory registered it when it built the image (maybe an older one)
            factory.keep(world.schematic)
        faults = Faults(latency_ms=max(0.0, args.latency_ms))
        lab = Lab(
            world.nodes,
            cluster_name=world.options.cluster_name,
            faults=faults,
            validator=build.validate_config,
            endpoint=world.endpoint,
        )
        lab.factory = factory
        factory.blip = faults.factory_blip
        self.lab = lab
        certs = world.bundle.certs
        assert certs is not None and certs.os is not None  # build_world's new_bundle makes both
        os_ca = certs.os
        ca = pki.CertAndKey(crt=os_ca.crt, key=os_ca.key)

        apid = Apid(lab, endpoint_hosts=(HOST,))
        apid_port = await apid.start(server_tls(ca, now, [HOST, "localhost"]), HOST, 0)
        self.apid = apid
        self.closers.append(apid.close)
        endpoint = f"{HOST}:{apid_port}"

        omni_port = await self._start_omni(
            lab,
            world,
            web,
            factory.url if args.omni_factory_url is None else args.omni_factory_url,
        )
        omni_spec: dict[str, Any] = {
            "url": f"https://{HOST}:{omni_port}",
            "caFile": f"./{LAB_CA}",
            "serviceAccountKeyFile": f"./{SERVICE_ACCOUNT_KEY}",
        }
        factory_spec: dict[str, Any] = {"url": factory.url, "caFile": f"./{LAB_CA}"}
        ports: dict[str, int] = {
            "apid": apid_port,
            "omni": omni_port,
            "factory": factory.port,
        }

        admin = AdminServer(self.token, self._routes())
        ports["admin"] = await admin.start(HOST, 0)
        self.admin = admin
        self.closers.append(admin.close)

        addresses = [n.address for n in world.nodes]
        first = addresses[:1]
        for name, roles in (
            ("talosconfig", [ADMIN]),
            ("talosconfig-operator", [OPERATOR]),
            ("talosconfig-reader", [READER]),
        ):
            client = pki.admin_client_cert(ca, now, roles=roles)
            _write(
                self.dir / name,
                talosconfig(world.options.cluster_name, endpoint, first, ca.crt, client),
            )
        _write(self.dir / "import.yaml", import_spec(world, addresses, omni_spec, factory_spec))

        info = {
            "pid": os.getpid(),
            "token": self.token,
            "ports": ports,
            "endpoint": endpoint,
            "cluster": world.options.cluster_name,
            "versions": {
                "talos": world.options.talos_version,
                "initial_talos": world.options.initial_talos_version,
                "kubernetes": world.options.kubernetes_version,
                "initial_kubernetes": world.options.initial_kubernetes_version,
            },
            "schematic_id": world.schematic_id,
            "nodes": [
                {
                    "address": n.address,
                    "hostname": n.hostname,
                    "machine_id": n.machine_uuid,
                    "role": n.role,
                }
                for n in world.nodes
            ],
            "files": {
                "talosconfig": "talosconfig",
                "import_spec": "import.yaml",
                "log": LAB_LOG,
            },
            "startup_seconds": round(time.monotonic() - self.started, 3),
            "build_seconds": {k: round(v, 3) for k, v in world.timings.items()},
        }
        _write(self.dir / LAB_JSON, json.dumps(info, indent=2, sort_keys=True) + "\n")
        return info

    def _omni_seed(self, versions: dict[str, list[str]], factory_url: str) -> OmniSeed:
        lab_factory = self.factory.url if self.factory is not None else factory_url
        current = self.lab.nodes[0].talos_version if self.lab and self.lab.nodes else ""
        seed = OmniSeed(
            talos_versions=versions,
            image_factory_base_url=factory_url,
            secondary_image_factory_base_url=self.args.omni_secondary_factory_url,
            image_factory_urls=(
                {current.removeprefix("v"): lab_factory}
                if self.args.omni_version_factory and current
                else {}
            ),
            image_factory_auth=self.factory_auth,
            backend_version=self.args.omni_version,
            zstd_dictionary=_read_dictionary(self.args.omni_zstd_dict),
        )
        if self.args.omni_machine_api_url:
            seed.machine_api_url = self.args.omni_machine_api_url
        if self.args.omni_join_token:
            seed.join_token = self.args.omni_join_token
        seed.backend_api_version = self.args.omni_api_version
        if self.args.omni_join_ms is not None:
            seed.join_seconds = max(0.0, self.args.omni_join_ms) / 1000.0
        return seed

    async def _start_omni(
        self, lab: Lab, world: build.World, web: pki.CertAndKey, factory_url: str
    ) -> int:
        """Start the Omni side, connect it to the nodes, and write its client files."""
        o = world.options
        assert o.kubernetes_version and o.initial_kubernetes_version
        versions = default_talos_versions()
        for talos, kube in (
            (o.talos_version, o.kubernetes_version),
            (o.initial_talos_version, o.initial_kubernetes_version),
        ):
            known = versions.setdefault(talos.removeprefix("v"), [])
            if kube not in known:
                known.append(kube)
        omni = OmniSim(
            tls_cert=web.crt,
            tls_key=web.key,
            seed=self._omni_seed(versions, factory_url),
            gateway=lab,
            faults=lab.faults,
        )
        port = await omni.start(HOST, 0)
        self.closers.append(omni.stop)
        lab.omni = omni
        account = siderov1.generate_service_account(SERVICE_ACCOUNT_NAME, now=time.time())
        omni.register_public_key(account.public_key_armored, Role.OPERATOR, account.name)
        _write(self.dir / SERVICE_ACCOUNT_KEY, account.env_value + "\n")
        keys = self.dir / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        context = o.cluster_name
        _write(keys / f"{context}-{account.name}.pgp", _armored_private(account.env_value))
        omniconfig = {
            "context": context,
            "contexts": {
                context: {
                    "url": f"https://{HOST}:{port}",
                    "auth": {"siderov1": {"identity": account.name}},
                }
            },
        }
        _write(self.dir / "omniconfig", yaml.safe_dump(omniconfig, sort_keys=False))
        return port

    def _routes(self) -> dict[tuple[str, str], Callable[[Request], Awaitable[Any]]]:
        async def status(req: Request) -> Any:
            assert self.lab is not None
            return self.lab.status(with_configs=req.query.get("configs", ["0"])[0] == "1")

        async def get_faults(req: Request) -> Any:
            assert self.lab is not None
            return self.lab.faults.to_dict()

        async def post_faults(req: Request) -> Any:
            assert self.lab is not None
            known = set(self.lab.by_address)
            faults = self.lab.faults
            before = dict(faults.schematic_content), dict(faults.kubelet_images)
            change_faults(faults, req.body, known)
            after = faults.schematic_content, faults.kubelet_images
            for old, new in zip(before, after, strict=True):
                for address in old.keys() | new.keys():
                    if old.get(address) != new.get(address):
                        # its resources changed: watchers and the render cache must see it
                        self.lab.by_address[address].touch()
            assert self.factory is not None
            faults = self.lab.faults
            self.factory.set_down(
                "503" if faults.factory_down else "read-only" if faults.factory_read_only else None
            )
            await self.lab.sync_all()
            return self.lab.faults.to_dict()

        async def patch(req: Request) -> Any:
            lab = self.lab
            assert lab is not None
            body = req.body if isinstance(req.body, dict) else {}
            key, text = body.get("node"), body.get("patch")
            if not isinstance(key, str) or not isinstance(text, str):
                raise AdminError(400, "a patch request needs 'node' and 'patch' strings")
            node = lab.find(key)
            if node is None:
                raise AdminError(404, f"no node {key!r} in this lab")
            try:
                patched = build.patch_config(node.config, text)
                result = await lab.apply_configuration(node, patched, Mode.AUTO)
            except NodeError as err:
                raise AdminError(400, f"{node.address}: {err.message}") from None
            wanted = hashlib.sha256(patched).hexdigest()
            return {
                "node": node.address,
                "mode": result.mode.name,
                "details": result.details,
                "config_sha256": node.config_sha256,
                "persistent_sha256": hashlib.sha256(node.persistent).hexdigest(),
                "new_config_sha256": wanted,
                # when the new config is the active one: now, after the reboot under way (in
                # about this many seconds), or at the next reboot (staged)
                "active": node.config_sha256 == wanted,
                "lands_in_seconds": REBOOT_SECONDS if result.mode is Mode.REBOOT else None,
            }

        return {
            ("GET", "/status"): status,
            ("GET", "/faults"): get_faults,
            ("POST", "/faults"): post_faults,
            ("POST", "/patch"): patch,
        }

    async def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                await asyncio.wait_for(closer(), 5)
            except (TimeoutError, OSError):
                pass
        if self.lab is not None:
            await self.lab.close()


async def serve(args: argparse.Namespace, directory: Path) -> None:
    process = LabProcess(args, directory)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        info = await process.start()
        print(
            f"lab: {len(info['nodes'])} nodes serving; apid {info['endpoint']}, "
            f"admin port {info['ports']['admin']}; ready in {info['startup_seconds']} s",
            flush=True,
        )
        await stop.wait()
    finally:
        await process.close()
        try:
            current = json.loads((directory / LAB_JSON).read_text())
            if current.get("pid") == os.getpid():
                (directory / LAB_JSON).unlink()
        except (OSError, ValueError):
            pass


def _daemonize(directory: Path) -> None:
    """Fork; the parent prints the child's pid and exits, the child detaches into DIR/lab.log."""
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    os.setsid()
    log = os.open(directory / LAB_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)


def _lock(directory: Path) -> TextIO:
    """Hold DIR/.lab.lock for the process lifetime: a second lab on DIR fails fast."""
    handle = open(directory / LOCK_FILE, "a")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StartupError(f"{directory} is in use by another running lab") from None
    return handle


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_options(list(argv if argv is not None else sys.argv[1:]))
    if problem is not None:  # before the directory or a daemon exists: nothing is left behind
        print(f"lab: {problem}", file=sys.stderr, flush=True)
        return 1
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if args.daemon:
        _daemonize(directory)
    try:
        lock = _lock(directory)
        try:
            asyncio.run(serve(args, directory))
        finally:
            lock.close()
    except StartupError as err:
        print(f"lab: {err}", file=sys.stderr, flush=True)
        _write(directory / LAB_ERROR, f"{err}\n")
        return 1
    except Exception as exc:
        traceback.print_exc()
        _write(directory / LAB_ERROR, f"the lab failed: {type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
