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

from lab.omni_controllers import RenderRequest

KMSG_LOG_NAME = "omni-kmsg"


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
        separator = "&" if "?" in self.api_url else "?"
        return [
            {
                "apiVersion": "v1alpha1",
                "kind": "SideroLinkConfig",
                "apiUrl": f"{self.api_url}{separator}jointoken={self.join_token}",
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
    """Omni base + the machine's patches (in order) + its join documents, as config bytes."""
    raise NotImplementedError("waiting for planner.machineconfig generate/merge")


def config_patch_problems(data: str) -> list[str]:
    """Why Omni refuses a config patch (its denylist rejects instead of stripping)."""
    return []


def secrets_bundle_problem(data: str) -> str | None:
    """Why a secrets bundle fails Talos's ``Bundle.Validate``, or None."""
    return None
