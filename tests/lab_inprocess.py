"""The lab's apid run in the test's own process, so tests can read its call log and faults.

``start_world`` builds a lab world (``lab.build``) and serves its apid on loopback with the
world's own Ed25519 OS CA; ``InProcessLab.client`` mints a client certificate with any Talos
roles from that CA. Stop it with ``aio(world.close())``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from omniport.planner.machineconfig import pki
from omniport.providers.talos import TalosClient
from omniport.providers.talosconfig import Endpoint
from omniport.providers.tls import client_context

NOW = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


@dataclass
class InProcessLab:
    lab: Any  # lab.world.Lab
    apid: Any  # lab.apid.Apid
    ca: pki.CertAndKey
    port: int

    @property
    def nodes(self) -> list[str]:
        return [n.address for n in self.lab.nodes]

    @property
    def controlplanes(self) -> list[str]:
        return [n.address for n in self.lab.controlplanes]

    @property
    def workers(self) -> list[str]:
        return [a for a in self.nodes if a not in self.controlplanes]

    def cert(self, *roles: str) -> pki.CertAndKey:
        """A client certificate from the lab's OS CA with ``roles`` (default ``os:admin``)."""
        return pki.admin_client_cert(self.ca, NOW, roles=roles or ("os:admin",))

    def client(self, *roles: str, **kw: Any) -> TalosClient:
        cert = self.cert(*roles)
        ctx = client_context(self.ca.crt, cert.crt, cert.key)
        return TalosClient(ctx, [Endpoint("127.0.0.1", self.port)], **kw)

    async def close(self) -> None:
        await self.apid.close()
        await self.lab.close()


def start_world(aio: Any, **options: Any) -> InProcessLab:
    """Build a lab world and serve its apid in this process (stop with ``aio(w.close())``)."""
    from omniport.lab import build
    from omniport.lab.apid import Apid, server_tls
    from omniport.lab.world import Lab

    built = build.build_world(build.BuildOptions(**options), now=NOW)
    lab = Lab(
        built.nodes,
        cluster_name=built.options.cluster_name,
        validator=build.validate_config,
        endpoint=built.endpoint,
    )
    os_ca = built.bundle.certs.os
    ca = pki.CertAndKey(crt=os_ca.crt, key=os_ca.key)
    apid = Apid(lab, endpoint_hosts=("127.0.0.1",), record=True)
    port = aio(apid.start(server_tls(ca, NOW, ["127.0.0.1"]), "127.0.0.1", 0))
    return InProcessLab(lab, apid, ca, port)
