"""The three documents that connect a node to Omni, exactly as Omni's importer builds them.

They are strategic-merged into the node's live config; removing them (``$patch: delete``) or
restoring the backup disconnects the node again. The SideroLink API URL carries the join token,
so its rendering for people is always redacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from omniport.providers.codec.joinurl import join_api_url

SIDEROLINK_LISTEN_HOST = "fdae:41e4:649b:9303::1"
"""First address of Omni's default SideroLink network: where events and kmsg are sent."""
KMSG_LOG_NAME = "omni-kmsg"
SENSITIVE = "(sensitive value)"


@dataclass(frozen=True)
class JoinOptions:
    machine_api_url: str
    join_token: str
    events_port: int
    logs_port: int

    @property
    def api_url(self) -> str:
        return join_api_url(self.machine_api_url, self.join_token)


def join_documents(options: JoinOptions, *, redact: bool = False) -> list[dict[str, Any]]:
    """SideroLinkConfig, EventSinkConfig and KmsgLogConfig, in that order."""
    return [
        {
            "apiVersion": "v1alpha1",
            "kind": "SideroLinkConfig",
            "apiUrl": SENSITIVE if redact else options.api_url,
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "EventSinkConfig",
            "endpoint": f"[{SIDEROLINK_LISTEN_HOST}]:{options.events_port}",
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "KmsgLogConfig",
            "name": KMSG_LOG_NAME,
            "url": f"tcp://[{SIDEROLINK_LISTEN_HOST}]:{options.logs_port}",
        },
    ]


def removal_documents() -> list[dict[str, Any]]:
    """A strategic patch that deletes the three join documents (what omnictl's abort skips)."""
    return [
        {"apiVersion": "v1alpha1", "kind": "SideroLinkConfig", "$patch": "delete"},
        {"apiVersion": "v1alpha1", "kind": "EventSinkConfig", "$patch": "delete"},
        {
            "apiVersion": "v1alpha1",
            "kind": "KmsgLogConfig",
            "name": KMSG_LOG_NAME,
            "$patch": "delete",
        },
    ]


JOIN_KINDS = frozenset(
    {("SideroLinkConfig", None), ("EventSinkConfig", None), ("KmsgLogConfig", KMSG_LOG_NAME)}
)


def dial_target(api_url: str) -> str:
    """``scheme://host[:port]/path`` of a SideroLink API URL ("" without a host): which Omni a
    node joins, without the join token in the query."""
    parts = urlsplit(api_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else ""
