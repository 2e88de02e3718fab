"""Seeded inputs for the config-engine conformance checks, and what machinery made of them.

The three checks (``test_config_gen``, ``test_config_patch``, ``test_config_roundtrip``) draw
their cases here from ``random.Random(seed)``, so a failure names a case id that reproduces on
any machine. Machinery's secrets bundles and generated configs are cached per Talos minor for
the session: the patch and round-trip checks start from configs Talos itself generated, and
no minor pays for an oracle process twice for the same answers.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from omniport.planner.machineconfig.document import parse
from omniport.planner.machineconfig.generate import GenerateOptions, generate
from omniport.planner.machineconfig.secrets import SecretsBundle
from tests.interop import oracles

MINORS: tuple[str, ...] = tuple(
    sorted(oracles.MACHINERY, key=lambda m: tuple(int(p) for p in m.split(".")))
)

# Kubernetes minors each Talos release supports: compatibility/talos1XX's Minimum and Maximum
# KubernetesVersion in that machinery release (1.9: 1.27-1.32, ..., 1.14: 1.32-1.37).
K8S_MINORS: dict[str, range] = {
    m: range(int(m.split(".")[1]) + 18, int(m.split(".")[1]) + 24) for m in MINORS
}

BUNDLES_PER_MINOR = 3
GEN_CASES_PER_MINOR = 240


def minor_number(minor: str) -> int:
    return int(minor.split(".")[1])


def parse_docs(text: str) -> list[dict[str, Any]]:
    """A YAML stream as plain documents, read as the engine reads configs (YAML 1.2 core)."""
    return [doc.data for doc in parse(text, "oracle answer", patch=True).documents]


def bundle_texts(minor: str) -> tuple[str, ...]:
    """Secrets bundles machinery made for this minor's contract."""
    return _all_bundle_texts()[minor]


@cache
def _all_bundle_texts() -> dict[str, tuple[str, ...]]:
    """Every minor's bundles, one oracle process per minor, run side by side.

    Bundles are the slow part of the checks (RSA service-account keys); the processes wait on
    the CPU, not on each other, so running them together halves the wall time on two cores.
    """

    def ask(minor: str) -> tuple[str, ...]:
        cases = [
            {"id": f"secrets-{minor}-{i}", "op": "secrets", "contract": f"v{minor}"}
            for i in range(BUNDLES_PER_MINOR)
        ]
        answers = oracles.Oracle(minor).ask(cases)
        for answer in answers:
            if answer.get("error"):
                raise RuntimeError(f"machinery {minor} could not make a bundle: {answer['error']}")
        return tuple(a["secrets"] for a in answers)

    with ThreadPoolExecutor(max_workers=len(MINORS)) as pool:
        return dict(zip(MINORS, pool.map(ask, MINORS), strict=True))


@cache
def bundles(minor: str) -> tuple[SecretsBundle, ...]:
    return tuple(SecretsBundle.from_yaml(text) for text in bundle_texts(minor))


@dataclass(frozen=True)
class GenCase:
    """One generator input: ``generate``'s arguments, and the oracle case that mirrors them."""

    id: str
    minor: str
    contract: str
    machine_type: str
    cluster_name: str
    endpoint: str
    kubernetes_version: str
    bundle: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def oracle_case(self) -> dict[str, Any]:
        gen = {
            "type": self.machine_type,
            "cluster_name": self.cluster_name,
            "endpoint": self.endpoint,
            "kubernetes_version": self.kubernetes_version,
            "secrets": bundle_texts(self.minor)[self.bundle],
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.options.items()},
        }
        return {"id": self.id, "op": "gen", "contract": self.contract, "gen": gen}

    def engine(self) -> list[dict[str, Any]]:
        return generate(
            self.machine_type,  # type: ignore[arg-type]
            contract=self.contract,
            cluster_name=self.cluster_name,
            endpoint=self.endpoint,
            kubernetes_version=self.kubernetes_version,
            secrets=bundles(self.minor)[self.bundle],
            options=GenerateOptions(**self.options),
        )


_WORDS = ("prod", "lab", "edge", "core", "blue", "green", "k8s", "talos", "omni", "dc1", "eu-west")


def _name(rng: random.Random) -> str:
    parts = rng.sample(_WORDS, rng.randint(1, 3))
    return "-".join(parts) + (str(rng.randint(1, 99)) if rng.random() < 0.4 else "")


def _ipv4(rng: random.Random) -> str:
    a, b, c = rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)
    return f"{rng.choice((10, 172, 192))}.{a}.{b}.{c}"


def _ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(rng.randint(1, 3))]
    return rng.choice(("fd00", "2001:db8", "fdae:41e4:649b:9303")) + "::" + ":".join(groups)


def _host(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        return f"{_name(rng)}.{rng.choice(('example.com', 'internal', 'lan', 'k8s.example.org'))}"
    if kind < 0.75:
        return _ipv4(rng)
    return _ipv6(rng)


def _endpoint(rng: random.Random) -> str:
    host = _host(rng)
    if ":" in host:
        host = f"[{host}]"
    port = rng.choice((":6443", ":6443", ":443", f":{rng.randint(1024, 65535)}", ""))
    return f"https://{host}{port}"


def _mirror(rng: random.Random) -> str:
    return f"https://{_name(rng)}.mirror.example.com" + rng.choice(("", ":5000", "/v2"))


def random_options(rng: random.Random, minor: int) -> dict[str, Any]:
    """A random subset of generator options; only those this machinery minor accepts."""
    opts: dict[str, Any] = {}
    if rng.random() < 0.4:
        opts["additional_sans"] = [
            rng.choice((_host, _ipv4, _ipv6))(rng) for _ in range(rng.randint(1, 3))
        ]
    if rng.random() < 0.3:
        opts["dns_domain"] = rng.choice(("example.com", "k8s.internal", "cluster.test"))
    if rng.random() < 0.3:
        opts["allow_scheduling_on_control_planes"] = True
    if rng.random() < 0.5:
        opts["install_disk"] = rng.choice(
            ("/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/disk/by-id/x")
        )
    if rng.random() < 0.4:
        opts["install_image"] = rng.choice(
            (
                f"ghcr.io/siderolabs/installer:v1.{minor}.{rng.randint(0, 9)}",
                f"factory.talos.dev/installer/{rng.getrandbits(256):064x}:v1.{minor}.1",
            )
        )
    if rng.random() < 0.2:
        opts["install_extra_kernel_args"] = rng.sample(
            ["console=ttyS0", "net.ifnames=0", "talos.platform=metal", "foo=bar"], rng.randint(1, 3)
        )
    if rng.random() < 0.3:
        opts["local_api_server_port"] = rng.choice((5443, 6444, rng.randint(1024, 65535)))
    if rng.random() < 0.3:
        opts["kube_prism_port"] = rng.choice((0, 7445, 7446, rng.randint(1024, 65535)))
    if rng.random() < 0.3:
        keys = [
            "net.ipv4.ip_forward",
            "vm.max_map_count",
            "fs.inotify.max_user_watches",
            "kernel.pid_max",
        ]
        opts["sysctls"] = {
            k: str(rng.randint(0, 1 << 20)) for k in rng.sample(keys, rng.randint(1, 3))
        }
    if rng.random() < 0.25:
        opts["cni_url"] = rng.choice(
            ("https://example.com/cni.yaml", "https://raw.example.org/cilium/v1.16/install.yaml")
        )
    if rng.random() < 0.3:
        hosts = rng.sample(
            ["docker.io", "ghcr.io", "registry.k8s.io", "quay.io", "gcr.io"], rng.randint(1, 3)
        )
        opts["registry_mirrors"] = {
            h: [_mirror(rng) for _ in range(rng.randint(1, 2))] for h in hosts
        }
    if rng.random() < 0.1:
        opts["registry_insecure"] = rng.sample(
            ["registry.local:5000", "docker.io"], rng.randint(1, 2)
        )
    if rng.random() < 0.3:
        opts["discovery"] = rng.random() < 0.5
    if rng.random() < 0.15:
        opts["host_dns_forward_kube_dns"] = True
    if rng.random() < 0.1:
        opts["debug"] = True
    if minor >= 14:
        if rng.random() < 0.2:
            opts["kubespan"] = rng.random() < 0.5
        if rng.random() < 0.15:
            opts["skip_unattended_install"] = True
    return opts


def gen_cases(minor: str, count: int = GEN_CASES_PER_MINOR, seed: int = 0) -> list[GenCase]:
    """``count`` seeded generator inputs for one machinery minor.

    Most cases use the minor's own contract; one in five an older one (talosctl's
    ``--talos-version``), down to five minors back, which the engine must get right too.
    """
    rng = random.Random(f"gen-{minor}-{seed}")
    number = minor_number(minor)
    cases = []
    for i in range(count):
        own = rng.random() < 0.8
        contract = number if own else rng.randint(max(3, number - 5), number - 1)
        k8s_minor = rng.choice(K8S_MINORS[minor])
        cases.append(
            GenCase(
                id=f"gen-{minor}-{i}",
                minor=minor,
                contract=f"v1.{contract}",
                machine_type=rng.choice(
                    ("controlplane", "controlplane", "worker", "worker", "init")
                ),
                cluster_name=_name(rng),
                endpoint=_endpoint(rng),
                kubernetes_version=f"1.{k8s_minor}.{rng.randint(0, 12)}",
                bundle=rng.randrange(BUNDLES_PER_MINOR),
                options=random_options(rng, number),
            )
        )
    return cases


@cache
def machinery_gen(minor: str) -> dict[str, dict[str, Any]]:
    """Machinery's answers to this minor's generator cases, by case id (one oracle process)."""
    cases = gen_cases(minor)
    answers = oracles.Oracle(minor).ask([c.oracle_case() for c in cases])
    return {a["id"]: a for a in answers}
