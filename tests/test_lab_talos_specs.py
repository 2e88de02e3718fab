"""The lab's COSI resources as Talos's typed Go client decodes them.

Talos's Go client (and so Omni's importer) builds a typed resource from ``spec.proto_spec``
only; ``yaml_spec`` is for humans. These tests read the lab over the network and walk the
protobuf bytes with a tiny wire parser of their own, checking the field numbers Talos's spec
structs declare (``protobuf:"N"`` tags), the YAML names its ``yaml`` tags use, and which types
are sensitive in which release. Each one failed before the lab sent ``proto_spec`` for every
typed resource (the typed client then saw empty specs).
"""

from __future__ import annotations

from typing import Any

import pytest

from omniport.providers.errors import PermissionDenied


def read(aio, lab, fn, role: str = "admin"):
    async def go():
        async with lab.client(role) as client:
            return await fn(client)

    return aio(go())


def get(aio, lab, node, namespace, rtype, rid, role="admin"):
    return read(aio, lab, lambda c: c.get(node, namespace, rtype, rid), role)


def fields(data: bytes) -> dict[int, list[Any]]:
    """Protobuf wire bytes as ``{field number: [values]}`` (varints as ints, the rest bytes)."""
    out: dict[int, list[Any]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value: Any = varint()
        elif wire == 2:
            size = varint()
            value = data[pos : pos + size]
            pos += size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def text(values: list[Any]) -> list[str]:
    return [v.decode() for v in values]


def test_every_typed_resource_carries_proto_spec(aio, lab):
    cp = lab.controlplanes[0]

    async def fn(c):
        out = {}
        for ns, rtype, rid in [
            ("cluster", "Members.cluster.talos.dev", None),
            ("cluster", "Infos.cluster.talos.dev", "current"),
            ("cluster", "Identities.cluster.talos.dev", "local"),
            ("network", "HostnameStatuses.net.talos.dev", "hostname"),
            ("hardware", "SystemInformations.hardware.talos.dev", "systeminformation"),
            ("runtime", "ExtensionStatuses.runtime.talos.dev", None),
            ("runtime", "MachineStatuses.runtime.talos.dev", "machine"),
            ("runtime", "Versions.runtime.talos.dev", "version"),
            ("k8s", "Nodenames.kubernetes.talos.dev", "nodename"),
            ("k8s", "KubeletConfigs.kubernetes.talos.dev", "kubelet"),
            ("controlplane", "APIServerConfigs.kubernetes.talos.dev", "kube-apiserver"),
            ("controlplane", "SchedulerConfigs.kubernetes.talos.dev", "kube-scheduler"),
            (
                "controlplane",
                "ControllerManagerConfigs.kubernetes.talos.dev",
                "kube-controller-manager",
            ),
        ]:
            if rid is None:
                out[rtype] = await c.list(cp, ns, rtype)
            else:
                out[rtype] = [await c.get(cp, ns, rtype, rid)]
        return out

    found = read(aio, lab, fn)
    for rtype, resources in found.items():
        for res in resources:
            assert res.proto_spec, f"{rtype}/{res.metadata.id} has no proto_spec"

    member = next(
        r for r in found["Members.cluster.talos.dev"] if r.spec["machineType"] == "worker"
    )
    wire = fields(member.proto_spec)
    assert text(wire[1]) == [member.spec["nodeId"]]
    # netip.Addr: a message holding the 4 address bytes in field 1.
    address = fields(wire[2][0])[1][0]
    assert ".".join(str(b) for b in address) == member.spec["addresses"][0]
    assert text(wire[3]) == [member.spec["hostname"]]
    assert wire[4] == [3]  # machine.TypeWorker
    assert 6 not in wire  # no controlPlane on a worker
    cp_member = next(r for r in found["Members.cluster.talos.dev"] if r.spec.get("controlPlane"))
    assert fields(cp_member.proto_spec)[4] == [2]
    assert fields(fields(cp_member.proto_spec)[6][0])[1] == [6443]

    info = found["Infos.cluster.talos.dev"][0]
    assert text(fields(info.proto_spec)[2]) == [info.spec["clusterName"]]
    host = found["HostnameStatuses.net.talos.dev"][0]
    assert text(fields(host.proto_spec)[1]) == [host.spec["hostname"]]
    sysinfo = found["SystemInformations.hardware.talos.dev"][0]
    assert text(fields(sysinfo.proto_spec)[5]) == [sysinfo.spec["uuid"]]
    status = fields(found["MachineStatuses.runtime.talos.dev"][0].proto_spec)
    assert status[1] == [4]  # running
    assert fields(status[2][0])[1] == [1]  # ready
    schematic = next(
        r
        for r in found["ExtensionStatuses.runtime.talos.dev"]
        if r.spec["metadata"]["name"] == "schematic"
    )
    metadata = fields(fields(schematic.proto_spec)[2][0])
    assert text(metadata[2]) == [schematic.spec["metadata"]["version"]]
    assert text(metadata[6]) == [schematic.spec["metadata"]["extraInfo"]]

    kubelet = found["KubeletConfigs.kubernetes.talos.dev"][0]
    wire = fields(kubelet.proto_spec)
    assert text(wire[1]) == [kubelet.spec["image"]]
    assert text(wire[2]) == kubelet.spec["clusterDNS"]
    # Up to 1.12 extraArgs is map<string,string> in field 4 (one entry per flag).
    entries = {fields(e)[1][0].decode(): fields(e)[2][0].decode() for e in wire.get(4, [])}
    assert entries == kubelet.spec.get("extraArgs", {})
    apiserver = found["APIServerConfigs.kubernetes.talos.dev"][0]
    wire = fields(apiserver.proto_spec)
    assert text(wire[3]) == [apiserver.spec["controlPlaneEndpoint"]]
    assert wire[5] == [6443]
    assert text(wire[6]) == apiserver.spec["serviceCIDR"]


def test_yaml_specs_use_talos_field_names(aio, lab):
    cp = lab.controlplanes[0]
    sysinfo = get(
        aio, lab, cp, "hardware", "SystemInformations.hardware.talos.dev", "systeminformation"
    )
    # Talos's yaml tag is all lower case, and empty fields are omitted.
    assert "serialnumber" in sysinfo.spec and "serialNumber" not in sysinfo.spec
    assert "skuNumber" not in sysinfo.spec
    apiserver = get(
        aio, lab, cp, "controlplane", "APIServerConfigs.kubernetes.talos.dev", "kube-apiserver"
    )
    assert (
        apiserver.spec["serviceCIDR"] == ["10.96.0.0/12"] and "serviceCIDRs" not in apiserver.spec
    )
    assert apiserver.spec["podSecurityPolicyEnabled"] is False  # up to 1.12
    assert apiserver.spec["resources"] == {"requests": {}, "limits": {}}
    kubelet = get(aio, lab, cp, "k8s", "KubeletConfigs.kubernetes.talos.dev", "kubelet")
    assert kubelet.spec["allowSchedulingOnControlPlane"] is False
    assert "extraMounts" not in kubelet.spec and "extraConfig" not in kubelet.spec
    version = get(aio, lab, cp, "runtime", "Versions.runtime.talos.dev", "version")
    assert version.spec == {"version": "v1.11.5"}  # `name` came in 1.13
    security = get(aio, lab, cp, "runtime", "SecurityStates.talos.dev", "securitystate")
    assert security.spec == {"secureBoot": False}


@pytest.fixture(scope="module")
def lab_113(lab_factory):
    return lab_factory("--talos-version", "v1.13.8", "--nodes", "2", name="specs-1.13")


def test_1_13_extra_args_are_arg_values_in_new_fields(aio, lab_113):
    node = lab_113.controlplanes[0]
    kubelet = get(aio, lab_113, node, "k8s", "KubeletConfigs.kubernetes.talos.dev", "kubelet")
    args = kubelet.spec["extraArgs"]
    assert args and all(set(v) == {"values"} for v in args.values())
    wire = fields(kubelet.proto_spec)
    assert 4 not in wire
    decoded = {fields(e)[1][0].decode(): text(fields(fields(e)[2][0]).get(1, [])) for e in wire[15]}
    assert decoded == {k: v["values"] for k, v in args.items()}
    version = get(aio, lab_113, node, "runtime", "Versions.runtime.talos.dev", "version")
    assert version.spec == {"version": "v1.13.8", "name": "Talos"}
    assert text(fields(version.proto_spec)[2]) == ["Talos"]


def test_1_13_kubelet_and_apiserver_configs_are_sensitive(aio, lab_113, lab):
    node = lab_113.controlplanes[0]
    for ns, rtype, rid in [
        ("k8s", "KubeletConfigs.kubernetes.talos.dev", "kubelet"),
        ("controlplane", "APIServerConfigs.kubernetes.talos.dev", "kube-apiserver"),
    ]:
        with pytest.raises(PermissionDenied, match="not authorized"):
            get(aio, lab_113, node, ns, rtype, rid, role="reader")
        definition = get(
            aio, lab_113, node, "meta", "ResourceDefinitions.meta.cosi.dev", rtype.lower()
        )
        assert definition.spec["sensitivity"] == "sensitive"
        # Not before 1.13.
        old = get(aio, lab, lab.controlplanes[0], ns, rtype, rid, role="reader")
        assert old.spec["image"]


def test_1_13_decoder_errors_name_the_document_and_its_line(aio, lab_113):
    """From 1.12 Talos's decoder prefixes its errors with the document and its first line."""
    from omniport.providers.errors import InvalidRequest
    from omniport.providers.talos import ApplyMode

    node = lab_113.workers[0]

    async def apply(data):
        async with lab_113.client() as c:
            return await c.apply_configuration(node, data, ApplyMode.AUTO)

    async def config():
        async with lab_113.client() as c:
            return await c.machine_config(node)

    before = aio(config())
    lines = before.count(b"\n")
    for extra, message in [
        (
            b"apiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fd00::1]:8090'\nx: 1\n",
            f"error decoding document v1alpha1/EventSinkConfig/ (line {lines + 2}): "
            "unknown keys found during decoding:\nx: 1\n",
        ),
        (
            b"apiVersion: v1alpha1\nkind: FrobConfig\nname: f\n",
            f'error decoding document v1alpha1/FrobConfig/f (line {lines + 2}): "FrobConfig" '
            '"v1alpha1": not registered',
        ),
    ]:
        with pytest.raises(InvalidRequest) as err:
            aio(apply(before + b"---\n" + extra))
        assert err.value.message == message
    with pytest.raises(InvalidRequest) as err:
        aio(apply(b"bogus: 1\n" + before))
    assert err.value.message == (
        "error decoding document /v1alpha1/ (line 1): unknown keys found during decoding:\n"
        "bogus: 1\n"
    )


def test_1_14_specs_follow_the_1_14_structs(aio, lab_factory):
    lab_114 = lab_factory("--talos-version", "v1.14.1", "--nodes", "1", name="specs-1.14")
    node = lab_114.controlplanes[0]
    kubelet = get(aio, lab_114, node, "k8s", "KubeletConfigs.kubernetes.talos.dev", "kubelet")
    assert "allowSchedulingOnControlPlane" not in kubelet.spec  # replaced by registerWithTaints
    assert 14 not in fields(kubelet.proto_spec)
    apiserver = get(
        aio,
        lab_114,
        node,
        "controlplane",
        "APIServerConfigs.kubernetes.talos.dev",
        "kube-apiserver",
    )
    assert {"startupProbesEnabled", "useAuthenticationConfig"} <= set(apiserver.spec)
    assert "podSecurityPolicyEnabled" not in apiserver.spec
    cm = get(
        aio,
        lab_114,
        node,
        "controlplane",
        "ControllerManagerConfigs.kubernetes.talos.dev",
        "kube-controller-manager",
    )
    assert {"nodeCIDRMaskSizeIPv4", "nodeCIDRMaskSizeIPv6"} <= set(cm.spec)
    assert "extraArgs" not in cm.spec  # omitempty from 1.14
    scheduler = get(
        aio,
        lab_114,
        node,
        "controlplane",
        "SchedulerConfigs.kubernetes.talos.dev",
        "kube-scheduler",
    )
    assert "extraArgs" not in scheduler.spec
