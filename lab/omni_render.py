"""What the lab's Omni computes from machine configs: rendered configs and content checks.

Everything here delegates to the pure machine-config engine (``planner.machineconfig``), the
same code omniport plans with, so the lab's Omni renders what the planner expects Omni to
render: base config for the cluster's current Talos version contract with the imported secrets
and Omni's SideroLink load-balancer endpoint, then the machine's patches, then the join
documents (omni-import.md §5 caveats 1-2, §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from omniport.lab.omni_controllers import RenderRequest
from omniport.lab.omni_store import q
from omniport.planner.machineconfig.contracts import Contract, parse_contract
from omniport.planner.machineconfig.document import ConfigError, emit, parse
from omniport.planner.machineconfig.generate import GenerateOptions, generate
from omniport.planner.machineconfig.merge import apply_patches, load_patch
from omniport.planner.machineconfig.sanitize import (
    DOCUMENT_FORBIDDEN_FIELDS,
    FORBIDDEN_FIELDS,
    sanitize,
)
from omniport.planner.machineconfig.secrets import SecretsBundle, SecretsError
from omniport.providers.codec.joinurl import join_api_url

KMSG_LOG_NAME = "omni-kmsg"
KUBE_PRISM_PORT = 7445


@dataclass(frozen=True)
class JoinOptions:
    """How Omni tells a machine to connect (SiderolinkAPIConfig + the default join token)."""

    api_url: str
    join_token: str
    listen_host: str
    events_port: int
    logs_port: int

    def documents(self) -> list[dict[str, Any]]:
        """SideroLinkConfig, EventSinkConfig and KmsgLogConfig, as Omni's join options make them."""
        return [
            {
                "apiVersion": "v1alpha1",
                "kind": "SideroLinkConfig",
                "apiUrl": join_api_url(self.api_url, self.join_token),
            },
            {
                "apiVersion": "v1alpha1",
                "kind": "EventSinkConfig",
                "endpoint": f"[{self.listen_host}]:{self.events_port}",
            },
            {
                "apiVersion": "v1alpha1",
                "kind": "KmsgLogConfig",
                "name": KMSG_LOG_NAME,
                "url": f"tcp://[{self.listen_host}]:{self.logs_port}",
            },
        ]

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.documents(), sort_keys=False)


def render_machine_config(request: RenderRequest, join: JoinOptions) -> bytes:
    """Omni base + the machine's patches (in order) + its join documents, as config bytes.

    The base is generated for the cluster's *current* Talos version contract (Omni keeps no
    initial version, omni-import.md §5 caveat 1) with the importer's options (no install
    image, KubePrism 7445, no unattended install) but Omni's load-balancer endpoint.
    """
    bundle = SecretsBundle.from_yaml(request.secrets_yaml, f"cluster {request.cluster_id} secrets")
    contract = parse_contract(request.talos_version)
    base = generate(
        "controlplane" if request.role == "controlplane" else "worker",
        contract=contract,
        cluster_name=request.cluster_id,
        endpoint=request.endpoint,
        kubernetes_version=request.kubernetes_version,
        secrets=bundle,
        options=GenerateOptions(
            install_image="",
            kube_prism_port=KUBE_PRISM_PORT if contract > Contract(1, 4) else None,
            skip_unattended_install=True,
        ),
    )
    patches: list[Any] = [
        load_patch(data, f"config patch {index} of machine {request.machine_uuid}")
        for index, data in enumerate(request.patches, start=1)
    ]
    patches.append(join.documents())
    return emit(apply_patches(base, patches)).encode()


# The denylist grew over Omni's releases: each rule below applies from the release named (older
# releases let the field or document through). Rules not listed are as old as the import.
_V1ALPHA1_RULES_SINCE: dict[str, tuple[int, int, int]] = {
    "cluster.ca": (1, 10, 0),
    "cluster.serviceAccount": (1, 10, 0),
    "machine.install.disk": (1, 11, 0),  # on Omni's main after v1.10.4
}
_MULTI_DOC_RULES_SINCE = (1, 10, 0)
"""Rules for documents other than v1alpha1 (forbidden kinds, their fields and elements)."""

NEWEST = (1, 11, 0)
"""The newest rule set: Omni's main branch as the references read it."""


def release_of(version: str) -> tuple[int, int, int]:
    """``1.9.3`` (or ``v1.11.0-alpha.0``) as a comparable (major, minor, patch)."""
    core = version.strip().removeprefix("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{q(version)} is not an Omni release like 1.9.3")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def config_patch_problems(data: str, release: tuple[int, int, int] = NEWEST) -> list[str]:
    """Why Omni ``release`` refuses a config patch: unreadable, or touching what Omni manages.

    Omni's validation runs the importer's denylist but rejects instead of stripping, so each
    removal the sanitizer would make becomes one reason (if that rule exists in ``release``)."""
    try:
        patch = parse(data, "config patch", patch=True)
    except ConfigError as exc:
        return [str(exc)]
    managed = set(FORBIDDEN_FIELDS)
    for fields in DOCUMENT_FORBIDDEN_FIELDS.values():
        managed.update(fields)
    reasons = []
    for removal in sanitize(patch).removed:
        if removal.path and removal.path not in managed and "[" not in removal.path:
            continue  # a key left empty by another removal: not a cause of its own
        legacy = removal.document == "v1alpha1"
        if not legacy and release < _MULTI_DOC_RULES_SINCE:
            continue
        if legacy and release < _V1ALPHA1_RULES_SINCE.get(removal.path, (0, 0, 0)):
            continue
        where = f"{removal.document}: {removal.path}" if removal.path else removal.document
        reasons.append(f"overriding {q(where)} is not allowed in a config patch: {removal.reason}")
    return reasons


def secrets_bundle_problem(data: str) -> str | None:
    """Why a secrets bundle fails Talos's ``Bundle.Validate``, or None."""
    try:
        problems = SecretsBundle.from_yaml(data, "imported cluster secrets").problems()
    except SecretsError as exc:
        return str(exc)
    return "; ".join(problems) if problems else None
