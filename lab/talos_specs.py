"""The protobuf form of Talos's typed resource specs, as Talos sends them in ``proto_spec``.

Talos's Go client (and so Omni's importer) decodes a COSI resource from ``spec.proto_spec``
alone: each typed spec is a Go struct whose fields carry ``protobuf:"N"`` tags, encoded by
siderolabs/protoenc (proto3 wire format: zero values left out, maps as key=1/value=2 entries,
``map[string]any`` as a ``google.protobuf.Struct``, ``netip.Addr`` as a message holding the
address bytes in field 1). ``yaml_spec`` is for humans (talosctl get -o yaml) and is ignored by
the typed client, so a resource without ``proto_spec`` decodes to an empty spec.

A :data:`Schema` maps a spec's YAML keys (the same names Talos's ``yaml`` tags use) to field
numbers and kinds; :func:`encode` turns the lab's YAML-shaped spec dict into those bytes.
Where a Talos release renumbered or retyped a field (``extraArgs`` became
``map[string]ArgValues`` under new numbers in 1.13), the schema is chosen per minor version.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

# Kinds: "str", "bool", "int", "strs" (repeated string), "addrs" (repeated netip.Addr),
# "map" (map[string]string), "args" (map[string]ArgValues), "any" (map[string]any),
# ("enum", {yaml name: number}), ("msg", Schema), ("msgs", Schema).
Kind = str | tuple[str, Any]
Schema = Mapping[str, tuple[int, Kind]]


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes(number: int, data: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(data)) + data


def _addr(text: str) -> bytes:
    return _bytes(1, ipaddress.ip_address(text).packed)


def _field(number: int, kind: Kind, value: Any) -> bytes:
    if kind == "str":
        return _bytes(number, str(value).encode()) if value else b""
    if kind == "bool":
        return _tag(number, 0) + _varint(1) if value else b""
    if kind == "int":
        return _tag(number, 0) + _varint(int(value)) if value else b""
    if kind == "strs":
        return b"".join(_bytes(number, str(v).encode()) for v in value or ())
    if kind == "addrs":
        return b"".join(_bytes(number, _addr(str(v))) for v in value or ())
    if kind == "map":
        return b"".join(
            _bytes(number, _field(1, "str", k) + _field(2, "str", v))
            for k, v in sorted((value or {}).items())
        )
    if kind == "args":
        return b"".join(
            _bytes(number, _field(1, "str", k) + _bytes(2, _field(1, "strs", arg_values(v))))
            for k, v in sorted((value or {}).items())
        )
    if kind == "any":
        if not value:
            return b""
        struct = struct_pb2.Struct()
        struct.update(value)
        return _bytes(number, struct.SerializeToString())
    if isinstance(kind, tuple):
        shape, detail = kind
        if shape == "enum":
            return _field(number, "int", detail[value] if isinstance(value, str) else value)
        if shape == "msg":
            return _bytes(number, encode(detail, value)) if value is not None else b""
        if shape == "msgs":
            return b"".join(_bytes(number, encode(detail, v)) for v in value or ())
    raise ValueError(f"unknown field kind {kind!r}")


def encode(schema: Schema, spec: Mapping[str, Any]) -> bytes:
    """``spec`` (YAML-shaped) in protoenc's wire form, fields in number order."""
    unknown = set(spec) - set(schema)
    if unknown:
        raise KeyError(f"spec keys without a protobuf field: {sorted(unknown)}")
    fields = sorted(
        (number, kind, spec[key]) for key, (number, kind) in schema.items() if key in spec
    )
    return b"".join(_field(number, kind, value) for number, kind, value in fields)


def arg_values(value: Any) -> list[str]:
    """An ``extraArgs`` value as the list Talos 1.13+ keeps (a scalar is one value)."""
    if isinstance(value, Mapping):
        return [str(v) for v in value.get("values") or ()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


# ---- Talos's spec layouts ----

MACHINE_TYPES = {"unknown": 0, "init": 1, "controlplane": 2, "worker": 3}
MACHINE_STAGES = {
    "unknown": 0,
    "booting": 1,
    "installing": 2,
    "maintenance": 3,
    "running": 4,
    "rebooting": 5,
    "shutting down": 6,
    "resetting": 7,
    "upgrading": 8,
}
SELINUX_STATES = {"disabled": 0, "enabled, permissive": 1, "enabled, enforcing": 2}
FIPS_STATES = {"disabled": 0, "enabled": 1, "enabled, strict": 2}

MEMBER: Schema = {
    "nodeId": (1, "str"),
    "addresses": (2, "addrs"),
    "hostname": (3, "str"),
    "machineType": (4, ("enum", MACHINE_TYPES)),
    "operatingSystem": (5, "str"),
    "controlPlane": (6, ("msg", {"port": (1, "int")})),
}
INFO: Schema = {"clusterId": (1, "str"), "clusterName": (2, "str")}
IDENTITY: Schema = {"nodeId": (1, "str")}
NODENAME: Schema = {
    "nodename": (1, "str"),
    "hostnameVersion": (2, "str"),
    "skipNodeRegistration": (3, "bool"),
}
HOSTNAME_STATUS: Schema = {"hostname": (1, "str"), "domainname": (2, "str")}


def system_information(minor: int) -> Schema:
    schema = dict(_SYSTEM_INFORMATION)
    if minor >= 14:
        schema["biosVersion"] = (8, "str")
    return schema


_SYSTEM_INFORMATION: Schema = {
    "manufacturer": (1, "str"),
    "productName": (2, "str"),
    "version": (3, "str"),
    "serialnumber": (4, "str"),
    "uuid": (5, "str"),
    "wakeUpType": (6, "str"),
    "skuNumber": (7, "str"),
}
VERSION: Schema = {"version": (1, "str"), "name": (2, "str")}
MACHINE_STATUS: Schema = {
    "stage": (1, ("enum", MACHINE_STAGES)),
    "status": (
        2,
        (
            "msg",
            {
                "ready": (1, "bool"),
                "unmetConditions": (2, ("msgs", {"name": (1, "str"), "reason": (2, "str")})),
            },
        ),
    ),
}
SECURITY_STATE: Schema = {
    "secureBoot": (1, "bool"),
    "ukiSigningKeyFingerprint": (2, "str"),
    "pcrSigningKeyFingerprint": (3, "str"),
    "selinuxState": (4, ("enum", SELINUX_STATES)),
    "bootedWithUKI": (5, "bool"),
    "fipsState": (6, ("enum", FIPS_STATES)),
    "moduleSignatureEnforced": (7, "bool"),
}
EXTENSION_STATUS: Schema = {
    "image": (1, "str"),
    "metadata": (
        2,
        (
            "msg",
            {
                "name": (1, "str"),
                "version": (2, "str"),
                "author": (3, "str"),
                "description": (4, "str"),
                "compatibility": (
                    5,
                    ("msg", {"talos": (1, ("msg", {"version": (1, "str")}))}),
                ),
                "extraInfo": (6, "str"),
            },
        ),
    ),
}
IMAGE_FACTORY_SCHEMATIC: Schema = {
    "schematicId": (1, "str"),
    "flavor": (2, "str"),
    "apiUrl": (3, "str"),
}

_EXTRA_VOLUME: Schema = {
    "name": (1, "str"),
    "hostPath": (2, "str"),
    "mountPath": (3, "str"),
    "readonly": (4, "bool"),
}
_RESOURCES: Schema = {"requests": (1, "map"), "limits": (2, "map")}


def _extra_args(minor: int, before_113: int, from_113: int) -> tuple[int, Kind]:
    """``extraArgs``: ``map[string]string`` up to 1.12, ``map[string]ArgValues`` from 1.13."""
    return (from_113, "args") if minor >= 13 else (before_113, "map")


def kubelet_config(minor: int) -> Schema:
    return {
        "image": (1, "str"),
        "clusterDNS": (2, "strs"),
        "clusterDomain": (3, "str"),
        "extraArgs": _extra_args(minor, 4, 15),
        "extraConfig": (6, "any"),
        "cloudProviderExternal": (7, "bool"),
        "defaultRuntimeSeccompEnabled": (8, "bool"),
        "skipNodeRegistration": (9, "bool"),
        "staticPodListURL": (10, "str"),
        "disableManifestsDirectory": (11, "bool"),
        "enableFSQuotaMonitoring": (12, "bool"),
        "credentialProviderConfig": (13, "any"),
        # 1.14 dropped allowSchedulingOnControlPlane for registerWithTaints.
        **(
            {"registerWithTaints": (16, "map")}
            if minor >= 14
            else {"allowSchedulingOnControlPlane": (14, "bool")}
        ),
    }


def api_server_config(minor: int) -> Schema:
    schema: dict[str, tuple[int, Kind]] = {
        "image": (1, "str"),
        "cloudProvider": (2, "str"),
        "controlPlaneEndpoint": (3, "str"),
        "etcdServers": (4, "strs"),
        "localPort": (5, "int"),
        "serviceCIDR": (6, "strs"),
        "extraArgs": _extra_args(minor, 7, 13),
        "extraVolumes": (8, ("msgs", _EXTRA_VOLUME)),
        "environmentVariables": (9, "map"),
        "advertisedAddress": (11, "str"),
        "resources": (12, ("msg", _RESOURCES)),
    }
    if minor < 13:
        schema["podSecurityPolicyEnabled"] = (10, "bool")
    if minor >= 14:
        schema |= {
            "startupProbesEnabled": (14, "bool"),
            "useAuthenticationConfig": (15, "bool"),
            "args": (16, "strs"),
        }
    return schema


def controller_manager_config(minor: int) -> Schema:
    schema: dict[str, tuple[int, Kind]] = {
        "enabled": (1, "bool"),
        "image": (2, "str"),
        "cloudProvider": (3, "str"),
        "podCIDRs": (4, "strs"),
        "serviceCIDRs": (5, "strs"),
        "extraArgs": _extra_args(minor, 6, 10),
        "extraVolumes": (7, ("msgs", _EXTRA_VOLUME)),
        "environmentVariables": (8, "map"),
        "resources": (9, ("msg", _RESOURCES)),
    }
    if minor >= 14:
        schema |= {
            "args": (11, "strs"),
            "nodeCIDRMaskSizeIPv4": (12, "int"),
            "nodeCIDRMaskSizeIPv6": (13, "int"),
        }
    return schema


def scheduler_config(minor: int) -> Schema:
    schema: dict[str, tuple[int, Kind]] = {
        "enabled": (1, "bool"),
        "image": (2, "str"),
        "extraArgs": _extra_args(minor, 3, 8),
        "extraVolumes": (4, ("msgs", _EXTRA_VOLUME)),
        "environmentVariables": (5, "map"),
        "resources": (6, ("msg", _RESOURCES)),
        "config": (7, "any"),
    }
    if minor >= 14:
        schema["args"] = (9, "strs")
    return schema
