"""Seeded config patches for the patch conformance check.

A case is a config machinery generated (``mc_cases.machinery_gen``), sometimes cut down to its
v1alpha1 document, and one to three patches as talosctl takes them: strategic merge YAML
(possibly several documents, with ``$patch: delete`` on documents, keys and list elements) or
JSON 6902 (as a JSON array or a YAML list). Values keep the types Talos's structs declare, and
new documents are kinds the minor's machinery knows, so that a verdict is about patching, not
about a field or kind one release lacks (the engine is version-agnostic by design). Inputs
that hit one of test_config_patch's known differences are drawn only on minors where
machinery agrees with the engine; the comments at each such place say which.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.interop import mc_cases

PATCH_CASES_PER_MINOR = 300

Doc = dict[str, Any]
Fragment = Callable[[random.Random, "Context"], Doc | None]


@dataclass(frozen=True)
class Context:
    minor: int
    docs: list[Doc]
    deleted: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) deleted so far
    added: list[Doc] = field(default_factory=list)  # documents earlier patches added

    @property
    def legacy(self) -> Doc:
        return self.docs[0]

    @property
    def controlplane(self) -> bool:
        return self.legacy.get("machine", {}).get("type") in ("controlplane", "init")

    def get(self, *path: str) -> Any:
        node: Any = self.legacy
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node


@dataclass(frozen=True)
class PatchCase:
    id: str
    minor: str
    config: str
    patches: tuple[str, ...]

    def oracle_case(self) -> dict[str, Any]:
        return {"id": self.id, "op": "patch", "config": self.config, "patches": list(self.patches)}


def at(path: str, value: Any) -> Doc:
    """``{"a": {"b": value}}`` from ``"a.b"``."""
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


def _name(rng: random.Random) -> str:
    return rng.choice(("alpha", "beta", "gamma", "delta")) + str(rng.randint(0, 9))


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def interface_item(rng: random.Random) -> Doc:
    item: Doc = {"interface": rng.choice(("eth0", "eth1", "bond0", "enp1s0"))}
    if rng.random() < 0.5:
        item["addresses"] = [f"{_ip(rng)}/24" for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.4:
        item["dhcp"] = rng.random() < 0.5
    if rng.random() < 0.3:
        item["mtu"] = rng.choice((1500, 9000))
    if rng.random() < 0.3:
        item["routes"] = [{"network": "0.0.0.0/0", "gateway": _ip(rng)}]
    if rng.random() < 0.3:
        item["vlans"] = [
            {"vlanId": rng.choice((10, 20, 30)), "addresses": [f"{_ip(rng)}/24"]}
            for _ in range(rng.randint(1, 2))
        ]
    return item


def _arg_map(rng: random.Random, ctx: Context) -> Doc:
    keys = ["v", "feature-gates", "max-pods", "node-labels", "rotate-server-certificates"]
    # Before 1.13 extraArgs is a plain map, where "" never overwrites (a known difference).
    values = ("2", "true", "110", "a=b", "") if ctx.minor >= 13 else ("2", "true", "110", "a=b")
    return {k: rng.choice(values) for k in rng.sample(keys, 2)}


# --- fragments of the v1alpha1 document ---------------------------------------------------


def legacy_fragments() -> list[Fragment]:
    cp_only: Callable[[Fragment], Fragment] = lambda f: (  # noqa: E731
        lambda rng, ctx: f(rng, ctx) if ctx.controlplane else None
    )
    return [
        lambda rng, ctx: at("machine.network.hostname", f"node-{_name(rng)}"),
        lambda rng, ctx: at("machine.network.nameservers", [_ip(rng)]),
        lambda rng, ctx: at(
            "machine.network.interfaces", [interface_item(rng) for _ in range(rng.randint(1, 2))]
        ),
        lambda rng, ctx: at("machine.kubelet.extraArgs", _arg_map(rng, ctx)),
        lambda rng, ctx: at("machine.kubelet.nodeIP.validSubnets", ["10.0.0.0/8"]),
        lambda rng, ctx: at("machine.sysctls", {"vm.max_map_count": str(rng.randint(1, 9999))}),
        lambda rng, ctx: at("machine.env", {"HTTP_PROXY": f"http://{_ip(rng)}:3128"}),
        lambda rng, ctx: at("machine.nodeLabels", {f"example.com/{_name(rng)}": _name(rng)}),
        lambda rng, ctx: at("machine.nodeTaints", {"dedicated": "gpu:NoSchedule"}),
        lambda rng, ctx: at("machine.install.extraKernelArgs", ["console=ttyS0"]),
        lambda rng, ctx: at("machine.install.disk", rng.choice(("/dev/sdb", ""))),
        lambda rng, ctx: at("machine.install.wipe", rng.random() < 0.5),
        lambda rng, ctx: at("machine.time.servers", [f"{_name(rng)}.pool.ntp.org"]),
        lambda rng, ctx: at("machine.certSANs", [_ip(rng), f"{_name(rng)}.example.com"]),
        lambda rng, ctx: at(
            "machine.files",
            [
                {
                    "content": f"[plugins]\n  x = {rng.randint(0, 9)}\n",
                    "permissions": 0o644,
                    "path": f"/var/cri/conf.d/{_name(rng)}.toml",
                    "op": "create",
                }
            ],
        ),
        lambda rng, ctx: at("machine.features.kubePrism", {"enabled": True, "port": 7446}),
        lambda rng, ctx: at("machine.features.diskQuotaSupport", rng.random() < 0.5),
        lambda rng, ctx: at(
            "machine.logging.destinations",
            [{"endpoint": f"udp://{_ip(rng)}:514", "format": "json_lines"}],
        ),
        lambda rng, ctx: at(
            "machine.registries.mirrors",
            {"docker.io": {"endpoints": [f"https://{_name(rng)}.mirror.example.com"]}},
        ),
        lambda rng, ctx: at("machine.kernel.modules", [{"name": "br_netfilter"}]),
        lambda rng, ctx: {"debug": rng.random() < 0.5},
        lambda rng, ctx: at("cluster.network.cni", {"name": "none"}),
        lambda rng, ctx: at("cluster.network.podSubnets", ["10.200.0.0/16"]),
        lambda rng, ctx: at("cluster.network.serviceSubnets", ["10.100.0.0/16", "fd00::/108"]),
        lambda rng, ctx: at("cluster.discovery.enabled", rng.random() < 0.5),
        lambda rng, ctx: at("cluster.discovery.registries.service.disabled", True),
        lambda rng, ctx: at(
            "cluster.controlPlane.endpoint",
            rng.choice(
                ("https://new.example.com:6443", "https://new.example.com", "https://:7443")
            ),
        ),
        lambda rng, ctx: at("cluster.extraManifests", [f"https://example.com/{_name(rng)}.yaml"]),
        lambda rng, ctx: at(
            "cluster.inlineManifests",
            [{"name": _name(rng), "contents": "apiVersion: v1\nkind: Namespace\n"}],
        ),
        lambda rng, ctx: at("cluster.clusterName", rng.choice((f"c-{_name(rng)}", ""))),
        cp_only(lambda rng, ctx: at("cluster.apiServer.certSANs", [f"{_name(rng)}.example.com"])),
        cp_only(lambda rng, ctx: at("cluster.apiServer.extraArgs", _arg_map(rng, ctx))),
        cp_only(lambda rng, ctx: at("cluster.controllerManager.extraArgs", _arg_map(rng, ctx))),
        cp_only(lambda rng, ctx: at("cluster.scheduler.extraArgs", _arg_map(rng, ctx))),
        cp_only(lambda rng, ctx: at("cluster.proxy.extraArgs", _arg_map(rng, ctx))),
        cp_only(lambda rng, ctx: at("cluster.proxy.disabled", rng.random() < 0.5)),
        cp_only(lambda rng, ctx: at("cluster.etcd.extraArgs", {"election-timeout": "5000"})),
        cp_only(lambda rng, ctx: at("cluster.etcd.advertisedSubnets", ["10.0.0.0/8"])),
        cp_only(lambda rng, ctx: at("cluster.coreDNS.disabled", True)),
        cp_only(lambda rng, ctx: at("cluster.allowSchedulingOnControlPlanes", True)),
        cp_only(
            lambda rng, ctx: at(
                "cluster.apiServer.auditPolicy",
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "rules": [{"level": rng.choice(("None", "Request"))}],
                },
            )
        ),
        cp_only(
            lambda rng, ctx: at(
                "cluster.apiServer.admissionControl",
                [
                    {
                        "name": rng.choice(("PodSecurity", "EventRateLimit")),
                        "configuration": {"defaults": {"enforce": "privileged"}},
                    }
                ],
            )
        ),
        cp_only(lambda rng, ctx: at("cluster.controlPlane.localAPIServerPort", 0)),
        lambda rng, ctx: at("machine.network.hostname", None),
        lambda rng, ctx: (
            at("machine.network.kubespan", {"enabled": True, "mtu": rng.choice((0, 1420))})
            if ctx.minor < 13
            else None
        ),
    ]


def _legacy_deletes(rng: random.Random, ctx: Context) -> Doc | None:
    """``$patch: delete`` on a key of the v1alpha1 document, present or not."""
    paths = _leaf_paths(ctx.legacy, ())
    paths = [p for p in paths if p[0] in ("machine", "cluster") and len(p) > 1]
    if rng.random() < 0.2:
        path = rng.choice(
            (
                ("machine", "sysctls"),
                ("machine", "network", "interfaces"),
                ("cluster", "apiServer", "extraArgs"),
                ("machine", "nope", "deeper"),
            )
        )
    else:
        if ctx.minor < 12:
            # Machinery before 1.12 cannot delete inside unstructured values (a known difference).
            paths = [
                p
                for p in paths
                if not any(p[: len(u)] == u and len(p) > len(u) for u in _UNSTRUCTURED)
            ]
        if rng.random() < 0.85:
            # Mostly not inside a PEM pair: those refusals would crowd out everything else.
            paths = [p for p in paths if p[-1] not in ("crt", "key")] or paths
        path = rng.choice(paths)
        if len(path) > 2 and rng.random() < 0.4:
            path = path[: rng.randint(2, len(path) - 1)]
    return at(".".join(path), {"$patch": "delete"})


# v1alpha1 fields that machinery holds as unstructured Kubernetes objects.
_UNSTRUCTURED = (
    ("cluster", "apiServer", "auditPolicy"),
    ("machine", "kubelet", "extraConfig"),
    ("machine", "kubelet", "credentialProviderConfig"),
    ("cluster", "scheduler", "config"),
)


def _list_element_deletes(rng: random.Random, ctx: Context) -> Doc | None:
    interfaces = ctx.get("machine", "network", "interfaces") or []
    admission = ctx.get("cluster", "apiServer", "admissionControl") or []
    choices = [("machine.network.interfaces", "interface", i.get("interface")) for i in interfaces]
    choices += [("cluster.apiServer.admissionControl", "name", a.get("name")) for a in admission]
    choices.append(("machine.network.interfaces", "interface", "eth9"))
    path, field, value = rng.choice(choices)
    return at(path, [{field: value, "$patch": "delete"}])


def _leaf_paths(node: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        out = []
        for key, value in node.items():
            out += _leaf_paths(value, (*path, key))
        return out
    return [path]


# --- other documents ----------------------------------------------------------------------


def new_documents(rng: random.Random, ctx: Context) -> list[Doc]:
    """Documents of kinds the minor's machinery knows, new or matching one in the config."""
    m = ctx.minor
    choices: list[Doc] = [
        {
            "apiVersion": "v1alpha1",
            "kind": "KmsgLogConfig",
            "name": rng.choice(("omni-kmsg", "remote")),
            "url": rng.choice((f"tcp://{_ip(rng)}:4000", "udp://[fd00::1]:514")),
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "EventSinkConfig",
            "endpoint": f"[fdae:41e4:649b:9303::{rng.randint(1, 9)}]:8090",
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "SideroLinkConfig",
            "apiUrl": rng.choice(
                ("https://omni.example.com:8090?jointoken=abc", "grpc://10.5.0.1:8090")
            ),
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "WatchdogTimerConfig",
            "device": "/dev/watchdog0",
            "timeout": rng.choice(("2m0s", "5m0s")),
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "ExtensionServiceConfig",
            "name": rng.choice(("nut-client", "tailscale")),
            "configFiles": [
                {"content": f"x={rng.randint(0, 9)}", "mountPath": rng.choice(("/a", "/b"))}
            ],
            "environment": [f"KEY={_name(rng)}"],
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "VolumeConfig",
            "name": "EPHEMERAL",
            "provisioning": {"maxSize": rng.choice(("10GiB", "20GB"))},
        },
    ]
    if m >= 12:
        choices += [
            {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"},
            {
                "apiVersion": "v1alpha1",
                "kind": "StaticHostConfig",
                "name": _ip(rng),
                "hostnames": [f"{_name(rng)}.local"],
            },
            {
                "apiVersion": "v1alpha1",
                "kind": "TimeSyncConfig",
                "ntp": {"servers": [f"{_name(rng)}.pool.ntp.org"]},
            },
            {
                "apiVersion": "v1alpha1",
                "kind": "ResolverConfig",
                "nameservers": [{"address": _ip(rng)}],
            },
        ]
    if m >= 12:
        choices.append(
            {"apiVersion": "v1alpha1", "kind": "ZswapConfig", "maxPoolPercent": rng.choice((0, 25))}
        )
    if m >= 13:
        choices.append(
            {
                "apiVersion": "v1alpha1",
                "kind": "KubeSpanConfig",
                "enabled": rng.random() < 0.5,
                "mtu": rng.choice((0, 1400)),
            }
        )
    if m >= 14:
        choices += [
            {
                "apiVersion": "v1alpha1",
                "kind": "KubeAPIServerConfig",
                "apiPort": rng.choice((0, 5443)),
            },
            {
                "apiVersion": "v1alpha1",
                "kind": "SysctlConfig",
                "params": {"a.b": str(rng.randint(0, 9))},
            },
            {"apiVersion": "v1alpha1", "kind": "KubePrismConfig", "port": rng.choice((7445, 7446))},
            {"apiVersion": "v1alpha1", "kind": "KubeletConfig", "extraArgs": _arg_map(rng, ctx)},
            {
                "apiVersion": "v1alpha1",
                "kind": "KubeNetworkConfig",
                "podSubnets": ["10.200.0.0/16"],
            },
            {
                "apiVersion": "v1alpha1",
                "kind": "KubeClusterConfig",
                "endpoint": rng.choice(("https://new.example.com:6443", "https://new.example.com")),
            },
            {
                "apiVersion": "v1alpha1",
                "kind": "KubeNodeConfig",
                "labels": {f"example.com/{_name(rng)}": "x"},
            },
        ]
    return rng.sample(choices, rng.randint(1, 2))


def _document_deletes(rng: random.Random, ctx: Context) -> list[Doc]:
    present = [
        d
        for d in [*ctx.docs[1:], *ctx.added]
        if (d.get("kind"), d.get("name", "")) not in ctx.deleted
    ]
    out = []
    # Before 1.14 machinery leaves an empty document behind for an absent one (see
    # test_config_patch's known differences), so only 1.14 is asked to delete absent ones.
    if present and (rng.random() < 0.8 or ctx.minor < 14):
        doc = rng.choice(present)
        out.append({k: doc[k] for k in ("apiVersion", "kind", "name") if k in doc})
        ctx.deleted.add((doc["kind"], doc.get("name", "")))
    elif ctx.minor < 14:
        return []
    else:
        out.append({"apiVersion": "v1alpha1", "kind": "WatchdogTimerConfig"})
    out[0]["$patch"] = "delete"
    if rng.random() < 0.1:
        out.append({"version": "v1alpha1", "$patch": "delete"})
    return out


# --- JSON 6902 ----------------------------------------------------------------------------


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def _json_operations(rng: random.Random, ctx: Context) -> list[Doc]:
    leaves = [p for p in _leaf_paths(ctx.legacy, ()) if p[0] in ("machine", "cluster")]
    ops: list[Doc] = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        leaf = rng.choice(leaves)
        if kind < 0.25:
            ops.append({"op": "add", "path": "/machine/network/hostname", "value": _name(rng)})
        elif kind < 0.35:
            ops.append({"op": "add", "path": "/machine/certSANs/-", "value": _ip(rng)})
        elif kind < 0.45:
            ops.append({"op": "remove", "path": _pointer(leaf)})
        elif kind < 0.55:
            ops.append(
                {
                    "op": "add",
                    "path": "/cluster/apiServer/extraArgs/v",
                    "value": str(rng.randint(1, 4)),
                }
            )
        elif kind < 0.65:
            ops.append(
                {
                    "op": "replace",
                    "path": "/machine/type",
                    "value": rng.choice(("worker", "controlplane")),
                }
            )
        elif kind < 0.72:
            ops.append(
                {
                    "op": "test",
                    "path": "/machine/type",
                    "value": rng.choice(("worker", "controlplane")),
                }
            )
        elif kind < 0.8:
            ops.append({"op": "remove", "path": "/machine/does/not/exist"})
        elif kind < 0.88:
            ops.append(
                {
                    "op": "copy",
                    "from": "/cluster/network/dnsDomain",
                    "path": "/machine/network/hostname",
                }
            )
        elif kind < 0.94:
            ops.append(
                {"op": "move", "from": "/machine/certSANs", "path": "/machine/network/nameservers"}
            )
        elif kind < 0.97:
            ops.append(
                {"op": "add", "path": "/machine/sysctls", "value": {"kernel.pid_max": "4194304"}}
            )
        else:
            # Absent keys of existing objects, which Talos's JSON-patch library reads as null.
            ops.append(
                rng.choice(
                    (
                        {"op": "replace", "path": "/machine/network/hostname", "value": "r"},
                        {"op": "replace", "path": "/machine/nope/hostname", "value": "r"},
                        {
                            "op": "copy",
                            "from": "/machine/nope",
                            "path": "/machine/network/hostname",
                        },
                        {"op": "test", "path": "/machine/nope", "value": None},
                        {"op": "test", "path": "/machine/nope", "value": "x"},
                    )
                )
            )
    return ops


# --- assembling cases ---------------------------------------------------------------------

_SEPARATOR = re.compile(r"^---\n", re.M)


def documents_text(config: str) -> list[str]:
    return [part for part in _SEPARATOR.split(config) if part.strip()]


def _dump(docs: list[Doc], rng: random.Random) -> str:
    if len(docs) == 1 and rng.random() < 0.2:
        return json.dumps(docs[0])
    return yaml.safe_dump_all(docs, sort_keys=False)


def _strategic(rng: random.Random, ctx: Context) -> str:
    fragments = legacy_fragments()
    docs: list[Doc] = []
    fresh: list[Doc] = []
    legacy: Doc = {}
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.55:
            part = rng.choice(fragments)(rng, ctx)
        elif roll < 0.7:
            part = _legacy_deletes(rng, ctx)
        elif roll < 0.78:
            part = _list_element_deletes(rng, ctx)
        elif roll < 0.92:
            added = new_documents(rng, ctx)
            docs += added
            fresh += added
            continue
        else:
            docs += _document_deletes(rng, ctx)
            continue
        if part:
            _deep_merge(legacy, part)
    if ctx.minor < 14:
        # Before 1.14 machinery refuses a patch naming a document twice (a known difference).
        seen: set[tuple[Any, ...]] = set()
        docs = [d for d in docs if _once(d, seen)]
    if legacy:
        if rng.random() < 0.5:
            legacy = {"version": "v1alpha1", **legacy}
        docs.insert(0, legacy)
    if not docs:
        docs = [at("machine.network.hostname", "fallback")]
    ctx.added.extend(fresh)
    for doc in fresh:  # added again, so it may be deleted again
        ctx.deleted.discard((doc["kind"], doc.get("name", "")))
    return _dump(docs, rng)


def _once(doc: Doc, seen: set[tuple[Any, ...]]) -> bool:
    key = (doc.get("apiVersion"), doc.get("kind"), doc.get("name"))
    if key in seen:
        return False
    seen.add(key)
    return True


def _deep_merge(into: Doc, part: Doc) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict) and "$patch" not in value:
            _deep_merge(into[key], value)
        else:
            into[key] = value


def patch_cases(minor: str, count: int = PATCH_CASES_PER_MINOR, seed: int = 0) -> list[PatchCase]:
    """``count`` seeded (config, patches) cases on configs this minor's machinery generated."""
    rng = random.Random(f"patch-{minor}-{seed}")
    generated = [a["config"] for a in mc_cases.machinery_gen(minor).values() if not a.get("error")]
    cases = []
    for i in range(count):
        config = rng.choice(generated)
        parts = documents_text(config)
        if len(parts) > 1 and rng.random() < 0.3:
            parts = parts[:1]
            config = parts[0]
        ctx = Context(mc_cases.minor_number(minor), mc_cases.parse_docs(config))
        patches = []
        strategic = False
        for _ in range(rng.choices((1, 2, 3), (6, 3, 1))[0]):
            # A JSON patch after a strategic one sees machinery's re-encoded config (a known
            # difference), so JSON patches come first.
            if strategic or rng.random() < 0.7 or (len(parts) > 1 and rng.random() < 0.7):
                strategic = True
                patches.append(_strategic(rng, ctx))
            else:
                ops = _json_operations(rng, ctx)
                patches.append(json.dumps(ops) if rng.random() < 0.5 else yaml.safe_dump(ops))
        cases.append(PatchCase(f"patch-{minor}-{i}", minor, config, tuple(patches)))
    return cases
