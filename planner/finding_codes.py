"""Every finding code: its severity, whether a user may accept it, and the fix we suggest.

Plain data, read by the checks that emit findings (``planner.checks``) and by the spec
(``findings.accept`` must name codes that exist and can be accepted). Codes that describe a
state no import can proceed from (a node we could not read, a cluster already in Omni) cannot
be accepted: accepting them would not make apply possible, only fail later and less clearly.
"""

from __future__ import annotations

from dataclasses import dataclass

from omniport.planner.plan import Severity

MIN_TALOS_VERSION = "1.9.0"
"""Omni's importer requires a Talos version strictly greater than this."""


@dataclass(frozen=True)
class Check:
    severity: Severity
    acceptable: bool
    fix: str


E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO  # noqa: E741

CHECKS: dict[str, Check] = {
    "NODE_UNREACHABLE": Check(E, False, "make the node reachable through the talos endpoints"),
    "TALOS_ROLE_INSUFFICIENT": Check(
        E, False, "use a talosconfig with the os:admin role (reading machine configs needs it)"
    ),
    "NODE_READ_FAILED": Check(E, False, "check the node's apid and retry"),
    "NO_CONTROL_PLANE": Check(E, False, "list at least one control-plane node in talos.nodes"),
    "MEMBERS_MISMATCH": Check(
        E, False, "list every cluster member in talos.nodes (and only members)"
    ),
    "MEMBERS_UNREADABLE": Check(
        E,
        True,
        "make the first node in talos.nodes reachable (talosctl get members), "
        "or accept to skip the member check",
    ),
    "DISCOVERY_DISABLED": Check(
        W, True, "make sure talos.nodes lists every node: discovery cannot confirm it"
    ),
    "TALOS_VERSIONS_DIFFER": Check(E, True, "upgrade all nodes to one Talos version first"),
    "MACHINE_NEWER_THAN_CLUSTER": Check(
        E,
        True,
        "finish the Talos upgrade first (the cluster takes its first control plane's version); "
        "accept it only for an Omni that admits such machines: Omni refuses them when apply "
        "adds them to the cluster, and apply then rolls back",
    ),
    "KUBERNETES_VERSIONS_DIFFER": Check(
        E, True, "finish the Kubernetes upgrade so every component runs one version"
    ),
    "IMAGE_VERSION_UNPARSEABLE": Check(E, True, "use images tagged with a version (vX.Y.Z)"),
    "TALOS_VERSION_ASSERTION": Check(
        E, False, "update versions.talos in the spec, or point it at the right cluster"
    ),
    "KUBERNETES_VERSION_ASSERTION": Check(
        E, False, "update versions.kubernetes in the spec, or point it at the right cluster"
    ),
    "INITIAL_VERSION_NEWER": Check(
        E, False, "set versions.initialTalos/initialKubernetes to the versions first installed"
    ),
    "TALOS_BELOW_MINIMUM": Check(
        E, False, f"upgrade Talos past {MIN_TALOS_VERSION} before importing"
    ),
    "TALOS_VERSION_UNKNOWN_TO_OMNI": Check(
        E, False, "upgrade Omni or Talos so that Omni supports this Talos version"
    ),
    "KUBERNETES_INCOMPATIBLE": Check(
        E, False, "upgrade Kubernetes to a version Omni pairs with this Talos version"
    ),
    "SCHEMATIC_MISSING": Check(
        E,
        True,
        "install from an Image Factory image, or accept: Omni will use the default installer",
    ),
    "SCHEMATIC_UNVERIFIABLE": Check(
        E, True, "upgrade to an Image Factory image that embeds its schematic, or accept"
    ),
    "SCHEMATIC_MISMATCH": Check(
        E, True, "the factory derives another ID from the node's schematic; investigate, or accept"
    ),
    "SCHEMATIC_UNKNOWN_TO_FACTORY": Check(
        W, True, "nothing to do: apply registers it; check the factory is the one Omni uses"
    ),
    "FACTORY_UNREACHABLE": Check(
        E, True, "check imageFactory.url, or accept to skip the check and the registration"
    ),
    "FACTORY_URL_MISSING": Check(
        E,
        True,
        "set imageFactory.url in the spec, or give Omni an Image Factory "
        "(--image-factory-address); or accept to import without registering schematics",
    ),
    "KEY_FILE_EXPOSED": Check(
        W, True, "make it readable by its owner only (chmod 600), as ssh requires of its keys"
    ),
    "OMNI_UNREACHABLE": Check(E, False, "check omni.url and the service account key"),
    "OMNI_TLS_UNVERIFIED": Check(
        W,
        True,
        "give Omni's CA in omni.caFile (or the system trust store) and drop "
        "omni.insecureSkipTLSVerify",
    ),
    "SIDEROLINK_URL_INVALID": Check(
        E, False, "set Omni's advertised SideroLink API URL (siderolink-api-advertised-url)"
    ),
    "CLUSTER_EXISTS": Check(E, False, "pick another cluster, or delete the one in Omni"),
    "ALREADY_IMPORTED": Check(
        E,
        False,
        "nothing to do: to undo the import run `omniport rollback` with its rollback file (or "
        "`omniport abort <cluster>`); to hand the cluster to Omni run `omniport unlock <cluster>`",
    ),
    "CLUSTER_IMPORT_IN_PROGRESS": Check(
        E, False, "run `omniport abort <cluster>` (or roll back the earlier apply) first"
    ),
    "NODE_FACTS_DISAGREE": Check(
        W, True, "let Talos settle (talosctl get machinetype, kubeletconfig) and plan again"
    ),
    "NODE_ALREADY_CONNECTED": Check(
        E, False, "remove the node's SideroLinkConfig, or abort its earlier import first"
    ),
    "LEFTOVER_JOIN_DOCUMENTS": Check(
        W, True, "nothing to do: the join overwrites them and rollback restores them"
    ),
    "MACHINE_KNOWN_TO_OMNI": Check(
        W, True, "the machine is already registered in Omni; make sure it is not in use there"
    ),
    "ETCD_MEMBERS_MISMATCH": Check(
        E, True, "make etcd membership equal the control-plane nodes (remove stale members)"
    ),
    "ETCD_LEARNER": Check(W, True, "wait until the etcd learner is promoted"),
    "SERVICE_UNHEALTHY": Check(E, True, "fix the service (talosctl services) before importing"),
    "HEALTH_CHECK_FAILED": Check(
        E, True, "fix the cluster's health, or disable healthCheck after review"
    ),
    "CONFIG_RESIDUE": Check(
        E, True, "these fields would differ after import; review them, or accept"
    ),
    "DENYLISTED_VALUES": Check(
        W, True, "Omni manages these fields itself; the live values stay on the node until unlock"
    ),
    "UNLOCK_PREVIEW": Check(
        I, True, "after `omniport unlock`, Omni pushes this config; review the differences"
    ),
    "UNLOCK_CONFIG_INVALID": Check(
        E,
        True,
        "Talos would refuse the config Omni pushes after unlock (omni#3424): migrate the live "
        "config to the documents this Talos version generates (or drop the named v1alpha1 "
        "fields from the node's imported ConfigPatches in Omni) before `omniport unlock`; "
        "accept only if you will do that",
    ),
}
