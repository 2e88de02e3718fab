"""Talos's own Go client (machinery's ``client`` package) against the lab's apid.

For each lab Talos version the matching ``talos-client-X.Y`` program (machinery of that minor)
talks to the lab with the talosconfig it wrote (Ed25519 mTLS), through apid's node routing:

* ``Version`` one-to-one (``WithNode``) and one-to-many (``WithNodes``, an unknown node included);
* every COSI resource Omni's importer reads, decoded into Talos's typed resources (which read
  ``proto_spec`` only), compared with what the lab serves as read by omniport's own provider
  (ids, versions, types, namespaces, labels, annotations, the YAML spec, the config bytes);
* ``ApplyConfiguration`` in each mode, dry runs included, with the effects checked through the
  client's own reads of ``MachineConfigs`` ``v1alpha1``/``persistent``;
* the error codes the client sees: bad config, unknown node, reader/operator roles, COSI
  one-to-many, missing resource, unsupported type.

Counts go to the interop table as ``talos-client`` per Talos minor.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import LabHandle
from tests.interop import counts, oracles

# Talos minor -> the lab version started for it (its client is built with that minor's machinery).
LAB_VERSIONS = {"1.11": "v1.11.5", "1.13": "v1.13.8", "1.14": "v1.14.1"}

# (key in the program's "read" output, namespace, type, id or None for a list, control plane only)
READS = [
    ("Members.cluster.talos.dev", "cluster", "Members.cluster.talos.dev", None, False),
    (
        "MachineTypes.config.talos.dev",
        "config",
        "MachineTypes.config.talos.dev",
        "machine-type",
        False,
    ),
    (
        "APIServerConfigs.kubernetes.talos.dev",
        "controlplane",
        "APIServerConfigs.kubernetes.talos.dev",
        "kube-apiserver",
        True,
    ),
    (
        "SchedulerConfigs.kubernetes.talos.dev",
        "controlplane",
        "SchedulerConfigs.kubernetes.talos.dev",
        "kube-scheduler",
        True,
    ),
    (
        "ControllerManagerConfigs.kubernetes.talos.dev",
        "controlplane",
        "ControllerManagerConfigs.kubernetes.talos.dev",
        "kube-controller-manager",
        True,
    ),
    (
        "KubeletConfigs.kubernetes.talos.dev",
        "k8s",
        "KubeletConfigs.kubernetes.talos.dev",
        "kubelet",
        False,
    ),
    (
        "MachineConfigs.config.talos.dev",
        "config",
        "MachineConfigs.config.talos.dev",
        "v1alpha1",
        False,
    ),
    (
        "MachineConfigs.config.talos.dev/persistent",
        "config",
        "MachineConfigs.config.talos.dev",
        "persistent",
        False,
    ),
    (
        "HostnameStatuses.net.talos.dev",
        "network",
        "HostnameStatuses.net.talos.dev",
        "hostname",
        False,
    ),
    (
        "SystemInformations.hardware.talos.dev",
        "hardware",
        "SystemInformations.hardware.talos.dev",
        "systeminformation",
        False,
    ),
    (
        "ExtensionStatuses.runtime.talos.dev",
        "runtime",
        "ExtensionStatuses.runtime.talos.dev",
        None,
        False,
    ),
    ("Infos.cluster.talos.dev", "cluster", "Infos.cluster.talos.dev", "current", False),
    ("Identities.cluster.talos.dev", "cluster", "Identities.cluster.talos.dev", "local", False),
    ("Nodenames.kubernetes.talos.dev", "k8s", "Nodenames.kubernetes.talos.dev", "nodename", False),
    (
        "MachineStatuses.runtime.talos.dev",
        "runtime",
        "MachineStatuses.runtime.talos.dev",
        "machine",
        False,
    ),
    ("Versions.runtime.talos.dev", "runtime", "Versions.runtime.talos.dev", None, False),
    ("SecurityStates.talos.dev", "runtime", "SecurityStates.talos.dev", None, False),
]
MACHINE_CONFIG = "MachineConfigs.config.talos.dev"
PERSISTENT = MACHINE_CONFIG + "/persistent"

pytestmark = pytest.mark.usefixtures("interop_built")


class Client:
    """One ``talos-client-X.Y`` program bound to a lab's talosconfig."""

    def __init__(self, minor: str, lab: LabHandle) -> None:
        self.minor = minor
        self.lab = lab
        self.path = oracles.BIN / f"talos-client-{minor}"

    def __call__(self, *args: str, role: str = "admin", timeout: float = 120) -> dict[str, Any]:
        name = "talosconfig" if role == "admin" else f"talosconfig-{role}"
        proc = subprocess.run(
            [str(self.path), "-talosconfig", str(self.lab.dir / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"{self.path.name} {' '.join(args)}: {proc.stderr.strip()}"
        return json.loads(proc.stdout)

    def machine_config(self, node: str, which: str = MACHINE_CONFIG) -> str:
        entry = self("read", "-node", node)[which]
        assert isinstance(entry, list), entry
        return str(entry[0]["config_bytes"])


def _minor(minor: str) -> tuple[int, int]:
    major, mnr = minor.split(".")
    return int(major), int(mnr)


@pytest.fixture(scope="module", params=sorted(LAB_VERSIONS, key=_minor), ids=lambda m: f"talos-{m}")
def talos(request: pytest.FixtureRequest, lab_factory: Callable[..., LabHandle]) -> Client:
    minor = request.param
    lab = lab_factory("--talos-version", LAB_VERSIONS[minor], name=f"talos-client-{minor}")
    return Client(minor, lab)


class Tally:
    """Cases compared in one test, recorded before the test asserts."""

    def __init__(self, minor: str) -> None:
        self.minor = minor
        self.problems: list[str] = []
        self.tried = 0

    def check(self, ok: bool, what: str) -> None:
        self.tried += 1
        if not ok:
            self.problems.append(what)

    def done(self) -> None:
        counts.record(
            "talos-client",
            self.minor,
            tried=self.tried,
            agreed=self.tried - len(self.problems),
        )
        assert not self.problems, "\n".join(self.problems)


# ---- Version and routing ----


def test_version_one_to_one_and_one_to_many(talos: Client) -> None:
    tally = Tally(talos.minor)
    lab_nodes = {n["address"]: n for n in talos.lab.status()["nodes"]}
    for node, info in lab_nodes.items():
        reply = talos("version", "-node", node)
        messages = reply.get("messages", [])
        tag = messages[0]["version"]["tag"] if len(messages) == 1 else None
        tally.check(tag == info["talos_version"], f"Version {node}: {reply}")
        # One-to-one: apid passes the reply through, so metadata stays empty.
        tally.check("metadata" not in messages[0], f"Version {node} has metadata: {messages[0]}")
    unknown = "127.1.255.254"
    targets = [*lab_nodes, unknown]
    reply = talos("version", "-nodes", ",".join(targets))
    hosts = sorted(m["metadata"]["hostname"] for m in reply["messages"])
    tally.check(hosts == sorted(lab_nodes), f"one-to-many hostnames {hosts}")
    tally.check(
        all(
            m["version"]["tag"] == lab_nodes[m["metadata"]["hostname"]]["talos_version"]
            for m in reply["messages"]
        ),
        f"one-to-many tags {reply['messages']}",
    )
    errors = reply.get("node_errors", "")
    tally.check(
        f"{unknown}: rpc error: code = Unavailable" in errors,
        f"one-to-many: the unknown node is not a per-node Unavailable error: {errors!r}",
    )
    tally.done()


# ---- COSI reads, typed ----


def _lab_reads(aio: Any, lab: LabHandle, node: str) -> dict[str, Any]:
    """What the lab serves on ``node`` for each entry of READS, read by omniport's provider."""
    from omniport.providers.errors import ProviderError

    async def read() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with lab.client() as client:
            for key, ns, rtype, rid, _ in READS:
                try:
                    if rid is None:
                        out[key] = await client.list(node, ns, rtype)
                    else:
                        out[key] = [await client.get(node, ns, rtype, rid)]
                except ProviderError as err:
                    out[key] = err
        return out

    return aio(read())


def _documents(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _kind(doc: dict[str, Any]) -> str:
    return str(doc.get("kind") or "v1alpha1")


def test_reads_decode_as_the_lab_serves_them(talos: Client, aio: Any) -> None:
    tally = Tally(talos.minor)
    status = {n["address"]: n for n in talos.lab.status(with_configs=True)["nodes"]}
    for node, info in status.items():
        go = talos("read", "-node", node)
        served = _lab_reads(aio, talos.lab, node)
        for key, _ns, _rtype, rid, cp_only in READS:
            where = f"{node} {key}"
            got, want = go[key], served[key]
            if cp_only and info["role"] != "controlplane":
                # A worker has no control plane resources: Get answers NotFound.
                code = got.get("error", {}).get("code") if isinstance(got, dict) else None
                tally.check(code == "NotFound", f"{where}: want NotFound on a worker, got {got}")
                continue
            if isinstance(want, Exception):
                tally.check(False, f"{where}: omniport's provider failed: {want}")
                continue
            if isinstance(got, dict):
                tally.check(False, f"{where}: the Go client failed: {got['error']}")
                continue
            tally.check(
                [r["id"] for r in got] == [r.metadata.id for r in want],
                f"{where}: ids {[r['id'] for r in got]} != {[r.metadata.id for r in want]}",
            )
            for g, w in zip(got, want, strict=False):
                md = w.metadata
                same_md = (g["namespace"], g["type"], g["id"], g["version"], g["phase"]) == (
                    md.namespace,
                    md.type,
                    md.id,
                    md.version,
                    md.phase,
                )
                tally.check(same_md, f"{where}: metadata {g} != {md}")
                tally.check(
                    (g["labels"] or {}) == dict(md.labels)
                    and (g["annotations"] or {}) == dict(md.annotations),
                    f"{where}: labels/annotations {g['labels']} {g['annotations']} != {md}",
                )
                if g["type"] == MACHINE_CONFIG:
                    _check_machine_config(tally, where, g, w, info if rid == "v1alpha1" else None)
                    continue
                decoded = yaml.safe_load(g["spec"])
                tally.check(
                    decoded == w.spec,
                    f"{where}: the typed Go spec differs from the lab's YAML spec:\n"
                    f"  go:  {decoded}\n  lab: {w.spec}",
                )
    tally.done()


def test_image_factory_schematic_from_1_14(talos: Client, aio: Any) -> None:
    """1.14 publishes the schematic as its own resource; machinery 1.14 decodes it typed."""
    if _minor(talos.minor) < (1, 14):
        pytest.skip("ImageFactorySchematics came with Talos 1.14")
    tally = Tally(talos.minor)
    rtype = "ImageFactorySchematics.runtime.talos.dev"
    for node in talos.lab.nodes:
        got = talos(
            "get", "-node", node, "-ns", "runtime", "-type", rtype, "-id", "image-factory-schematic"
        )
        served = _lab_get(aio, talos.lab, node, "runtime", rtype, "image-factory-schematic")
        tally.check(
            "spec" in got
            and yaml.safe_load(got["spec"]) == served.spec
            and got["version"] == served.metadata.version,
            f"{node} {rtype}: go {got} != lab {served.spec}",
        )
    tally.done()


def _lab_get(aio: Any, lab: LabHandle, node: str, ns: str, rtype: str, rid: str) -> Any:
    async def read() -> Any:
        async with lab.client() as client:
            return await client.get(node, ns, rtype, rid)

    return aio(read())


def _check_machine_config(
    tally: Tally, where: str, got: dict[str, Any], served: Any, node: dict[str, Any] | None
) -> None:
    from omniport.providers.wire.resource.config import config_pb2

    spec = config_pb2.MachineConfigSpec.FromString(served.proto_spec)
    raw = spec.yaml_marshalled.decode()
    tally.check(got["config_bytes"] == raw, f"{where}: the config bytes differ from proto_spec")
    kinds = [_kind(d) for d in _documents(raw)]
    tally.check(got["config_kinds"] == kinds, f"{where}: kinds {got['config_kinds']} != {kinds}")
    if node is not None:
        tally.check(raw == node["config"], f"{where}: differs from the node's active config")


def test_errors_the_client_sees(talos: Client) -> None:
    tally = Tally(talos.minor)
    cp, worker = talos.lab.controlplanes[0], talos.lab.workers[0]

    def expect(reply: dict[str, Any], code: str, text: str, what: str) -> None:
        err = reply.get("error") or {}
        tally.check(
            err.get("code") == code and text in err.get("message", ""),
            f"{what}: want {code} {text!r}, got {reply}",
        )

    mt = ("-ns", "config", "-type", "MachineTypes.config.talos.dev")
    expect(
        talos("get", "-node", cp, *mt, "-id", "nope"),
        "NotFound",
        "resource MachineTypes.config.talos.dev(config/nope@undefined) doesn't exist",
        "missing resource",
    )
    expect(
        talos("get", "-node", cp, "-ns", "config", "-type", "Nope.talos.dev", "-id", "x"),
        "PermissionDenied",
        'resource type "Nope.talos.dev" is not supported',
        "unsupported type",
    )
    expect(
        talos("get", "-nodes", f"{cp},{worker}", *mt, "-id", "machine-type"),
        "InvalidArgument",
        "one-2-many proxying is not supported for COSI methods",
        "COSI one-to-many",
    )
    expect(
        talos("get", "-node", "127.1.255.254", *mt, "-id", "machine-type"),
        "Unavailable",
        "127.1.255.254:50000",
        "unknown node",
    )
    expect(talos("etcd", "-node", worker), "Unimplemented", "control plane", "etcd on a worker")
    tally.check(
        talos("etcd", "-node", cp)["messages"][0]["members"][0]["hostname"]
        == talos.lab.info["nodes"][0]["hostname"],
        "etcd members on the control plane",
    )
    services = talos("services", "-node", worker)["messages"][0]["services"]
    tally.check({"apid", "kubelet"} <= {s["id"] for s in services}, f"services {services}")

    # Roles: a reader reads what is not sensitive; secrets and ApplyConfiguration need admin.
    sensitive = {MACHINE_CONFIG, PERSISTENT}
    if _minor(talos.minor) >= (1, 13):
        sensitive |= {
            "KubeletConfigs.kubernetes.talos.dev",
            "APIServerConfigs.kubernetes.talos.dev",
        }
    reads = talos("read", "-node", cp, role="reader")
    for key, *_ in READS:
        got = reads[key]
        if key in sensitive:
            expect(got, "PermissionDenied", "not authorized", f"reader reads {key}")
        else:
            tally.check(isinstance(got, list) and got, f"reader reads {key}: {got}")
    config = Path(talos.lab.dir / "worker-config.yaml")
    config.write_text(talos.machine_config(worker))
    for role in ("reader", "operator"):
        reply = talos("apply", "-node", worker, "-file", str(config), "-mode", "AUTO", role=role)
        expect(reply, "PermissionDenied", "not authorized", f"{role} applies")
    tally.done()


# ---- ApplyConfiguration ----


def _edit(config: str, change: Callable[[dict[str, Any]], None]) -> str:
    docs = _documents(config)
    legacy = next(d for d in docs if "kind" not in d)
    change(legacy)
    return yaml.safe_dump_all(docs, sort_keys=False)


def _node_label(value: str) -> Callable[[dict[str, Any]], None]:
    """A change Talos applies without a reboot (machine.nodeLabels)."""

    def change(doc: dict[str, Any]) -> None:
        doc["machine"].setdefault("nodeLabels", {})["omniport.dev/interop"] = value

    return change


def _env(value: str) -> Callable[[dict[str, Any]], None]:
    """A change that needs a reboot (machine.env is not live-changeable)."""

    def change(doc: dict[str, Any]) -> None:
        doc["machine"].setdefault("env", {})["OMNIPORT_INTEROP"] = value

    return change


def _wait_reachable(talos: Client, node: str, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if "messages" in talos("version", "-node", node):
            return
        time.sleep(0.2)
    raise AssertionError(f"{node} did not come back")


def test_apply_modes_have_talos_effects(talos: Client, tmp_path: Path) -> None:
    tally = Tally(talos.minor)
    node = talos.lab.workers[-1]
    files = iter(range(100))

    def write(text: str) -> str:
        path = tmp_path / f"config-{next(files)}.yaml"
        path.write_text(text)
        return str(path)

    def apply(text: str, mode: str, *extra: str) -> dict[str, Any]:
        return talos("apply", "-node", node, "-file", write(text), "-mode", mode, *extra)

    def configs() -> tuple[str, str]:
        read = talos("read", "-node", node)
        return read[MACHINE_CONFIG][0]["config_bytes"], read[PERSISTENT][0]["config_bytes"]

    def reply_of(reply: dict[str, Any]) -> dict[str, Any]:
        assert "messages" in reply, reply
        return reply["messages"][0]

    base, persistent = configs()
    tally.check(base == persistent, "active and persistent configs differ before any apply")

    live = _edit(base, _node_label("a"))
    reboot = _edit(base, _env("1"))

    # From 1.14 Talos applies every change live: AUTO is always NO_REBOOT, REBOOT is gone.
    modern = _minor(talos.minor) >= (1, 14)
    without = "Applied configuration without a reboot"
    with_reboot = "Applied configuration with a reboot"

    # Dry runs: the reply says what would happen, nothing changes.
    for mode, text, want_mode, details in [
        ("AUTO", live, "NO_REBOOT", without),
        ("AUTO", reboot, "NO_REBOOT" if modern else "REBOOT", without if modern else with_reboot),
        ("NO_REBOOT", live, "NO_REBOOT", without),
        ("REBOOT", live, "REBOOT", with_reboot),
        ("STAGED", reboot, "STAGED", "Staged configuration to be applied after the next reboot"),
        ("TRY", live, "TRY", without),
    ]:
        if modern and mode == "REBOOT":
            got = apply(text, mode, "-dry-run")
            tally.check(
                got.get("error", {}).get("code") == "Unimplemented", f"REBOOT dry run: {got}"
            )
            continue
        got = reply_of(apply(text, mode, "-dry-run"))
        tally.check(
            got["mode"] == want_mode
            and got["mode_details"].startswith(f"Dry run summary:\n{details} (skipped in dry-run).")
            and "Config diff:" in got["mode_details"],
            f"dry run {mode}: {got}",
        )
        tally.check(configs() == (base, base), f"dry run {mode} changed the node")

    # NO_REBOOT refuses a change that needs a reboot (up to 1.13; 1.14 applies it live).
    if modern:
        got = reply_of(apply(reboot, "NO_REBOOT"))
        tally.check(got["mode"] == "NO_REBOOT", f"NO_REBOOT, 1.14: {got}")
        tally.check(configs() == (reboot, reboot), "NO_REBOOT, 1.14: not applied live")
        reply_of(apply(base, "NO_REBOOT"))
    else:
        refused = apply(reboot, "NO_REBOOT")
        tally.check(
            refused.get("error", {}).get("code") == "InvalidArgument",
            f"NO_REBOOT with a reboot-only change: {refused}",
        )
    tally.check(configs() == (base, base), "NO_REBOOT left the node changed")

    # AUTO of a live change becomes NO_REBOOT: active and persistent both replaced.
    got = reply_of(apply(live, "AUTO"))
    tally.check(got["mode"] == "NO_REBOOT", f"AUTO live: {got}")
    tally.check(configs() == (live, live), "AUTO live did not replace both configs")

    # STAGED: persisted for the next boot, the running config untouched.
    staged = _edit(live, _node_label("staged"))
    got = reply_of(apply(staged, "STAGED"))
    tally.check(got["mode"] == "STAGED", f"STAGED: {got}")
    tally.check(configs() == (live, staged), "STAGED did not only persist")

    # TRY: running now, persistent untouched, reverted after the timeout to the config that
    # ran before it (not the staged one).
    tried = _edit(live, _node_label("try"))
    got = reply_of(apply(tried, "TRY", "-try-timeout", "2s"))
    tally.check(
        got["mode"] == "TRY"
        and got["mode_details"].endswith(
            "The config is applied in 'try' mode and will be automatically reverted back in 2s"
        ),
        f"TRY: {got}",
    )
    tally.check(configs() == (tried, staged), "TRY did not run the config without persisting it")
    time.sleep(3)
    tally.check(configs() == (live, staged), "TRY was not reverted to the config before it")

    # REBOOT: persisted, the node reboots into it (1.14: Unimplemented, nothing changes).
    if modern:
        got = apply(reboot, "REBOOT")
        tally.check(got.get("error", {}).get("code") == "Unimplemented", f"REBOOT, 1.14: {got}")
        tally.check(configs() == (live, staged), "a refused REBOOT changed the node")
        reply_of(apply(reboot, "NO_REBOOT"))
    else:
        got = reply_of(apply(reboot, "REBOOT"))
        tally.check(got["mode"] == "REBOOT", f"REBOOT: {got}")
        _wait_reachable(talos, node)
    tally.check(configs() == (reboot, reboot), "REBOOT did not boot into the new config")

    # AUTO of a change that needs a reboot becomes REBOOT and says why (1.14: NO_REBOOT).
    back = _edit(reboot, _env("2"))
    got = reply_of(apply(back, "AUTO"))
    if modern:
        tally.check(got["mode"] == "NO_REBOOT" and got["mode_details"] == without, f"{got}")
    else:
        tally.check(
            got["mode"] == "REBOOT" and got["mode_details"].startswith(with_reboot + ": "),
            f"AUTO reboot: {got}",
        )
        _wait_reachable(talos, node)
    tally.check(configs() == (back, back), "AUTO reboot did not boot into the new config")

    # Bad configs: the node refuses them as InvalidArgument with the very text machinery's
    # own loader (of the same minor) gives for them, and nothing changes.
    join = (
        "---\napiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: https://127.0.0.1:8099\n"
        "---\napiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fd00::1]:8090'\n"
        "---\napiVersion: v1alpha1\nkind: KmsgLogConfig\nname: omni-kmsg\n"
        "url: tcp://[fd00::1]:8092\n"
    )
    for what, text in [
        ("unknown v1alpha1 field", "bogus: 1\n" + back),
        (
            "unknown SideroLinkConfig field",
            back + join.replace("apiUrl:", "insecure: true\napiUrl:"),
        ),
        ("unknown EventSinkConfig field", back + join + "x: 1\n"),
        ("unknown kind", back + "---\napiVersion: v1alpha1\nkind: NoSuchConfig\nname: x\n"),
        ("not YAML", "machine: [unclosed\n"),
    ]:
        loader = talos("load", "-file", write(text)).get("error", {})
        got = apply(text, "AUTO").get("error", {})
        tally.check(loader.get("code") == "InvalidArgument", f"{what}: the loader accepts it")
        tally.check(got.get("code") == "InvalidArgument", f"bad config ({what}): {got}")
        if what != "not YAML":  # the YAML parser's wording is Go's own
            tally.check(
                got.get("message") == loader.get("message"),
                f"bad config ({what}): the node says {got.get('message')!r}, "
                f"machinery's loader {loader.get('message')!r}",
            )
    tally.check(configs() == (back, back), "a bad config changed the node")

    # The join documents an import adds: the loader and the node both accept them, live.
    loaded = talos("load", "-file", write(back + join))
    tally.check(
        loaded.get("kinds", [])[-3:] == ["SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"],
        f"the loader on the joined config: {loaded}",
    )
    got = reply_of(apply(back + join, "AUTO", "-dry-run"))
    tally.check(got["mode"] == "NO_REBOOT", f"join documents: {got}")

    # One-to-many apply (dry run): one reply per target, stamped with the target.
    targets = talos.lab.workers
    reply = talos(
        "apply", "-nodes", ",".join(targets), "-file", write(back), "-mode", "AUTO", "-dry-run"
    )
    hosts = sorted(m["hostname"] for m in reply.get("messages", []))
    tally.check(hosts == sorted(targets), f"one-to-many apply: {reply}")
    tally.done()
