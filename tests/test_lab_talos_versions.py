"""Version-dependent behaviour and realistic configs, read through the network only.

Small labs at other Talos versions: the MachineConfig spec encoding from 1.12, the 1.12 rule
that an applied config needs a v1alpha1 document, the 1.14 apply modes and the
ImageFactorySchematic resource, plain (non-factory) images, and what the generated configs look
like across a bigger cluster.
"""

from __future__ import annotations

import pytest
import yaml

from omniport.providers.errors import InvalidRequest, Unsupported
from omniport.providers.talos import YAML_SPEC_ANNOTATION, ApplyMode
from omniport.providers.wire.resource.config import config_pb2

MC = ("config", "MachineConfigs.config.talos.dev", "v1alpha1")


def call(aio, lab, fn):
    async def go():
        async with lab.client() as client:
            return await fn(client)

    return aio(go())


def docs_of(config: bytes) -> list[dict]:
    return [d for d in yaml.safe_load_all(config) if d]


@pytest.fixture(scope="module")
def lab112(lab_factory):
    return lab_factory("--nodes", "2", "--talos-version", "v1.12.1", name="lab112")


@pytest.fixture(scope="module")
def lab114(lab_factory):
    return lab_factory(
        "--nodes",
        "2",
        "--talos-version",
        "v1.14.0",
        "--initial-talos-version",
        "v1.14.0",
        name="lab114",
    )


def test_machine_config_from_1_12_is_a_yaml_string_with_annotation(aio, lab112):
    node = lab112.nodes[1]

    async def fn(c):
        return await c.get(node, *MC), await c.machine_config(node)

    res, data = call(aio, lab112, fn)
    assert res.metadata.annotations == {YAML_SPEC_ANNOTATION: "1"}
    assert yaml.safe_load(res.yaml_spec) == data.decode()
    assert config_pb2.MachineConfigSpec.FromString(res.proto_spec).yaml_marshalled == data


def test_1_12_refuses_a_config_without_v1alpha1(aio, lab112):
    node = lab112.nodes[1]
    only_docs = b"apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n    servers: [a]\n"
    with pytest.raises(InvalidRequest, match="doesn't contain v1alpha1 config"):
        call(aio, lab112, lambda c: c.apply_configuration(node, only_docs))


def test_1_12_accepts_its_new_documents(aio, lab112):
    node = lab112.nodes[1]
    config = call(aio, lab112, lambda c: c.machine_config(node))
    extra = config + b"---\napiVersion: v1alpha1\nkind: StaticHostConfig\nname: 10.5.0.1\n"
    extra += b"hostnames:\n    - registry.lab\n"
    result = call(aio, lab112, lambda c: c.apply_configuration(node, extra))
    assert result.mode is ApplyMode.NO_REBOOT


def test_1_14_auto_never_reboots_and_reboot_mode_is_gone(aio, lab114):
    node = lab114.nodes[1]
    config = call(aio, lab114, lambda c: c.machine_config(node))
    docs = docs_of(config)
    docs[0]["machine"]["env"] = {"A": "b"}
    changed = yaml.safe_dump_all(docs, sort_keys=False).encode()
    result = call(aio, lab114, lambda c: c.apply_configuration(node, changed))
    assert result.mode is ApplyMode.NO_REBOOT
    with pytest.raises(Unsupported):
        call(aio, lab114, lambda c: c.apply_configuration(node, changed, ApplyMode.REBOOT))


def test_1_14_publishes_the_image_factory_schematic(aio, lab114):
    res = call(
        aio,
        lab114,
        lambda c: c.get(
            lab114.nodes[0],
            "runtime",
            "ImageFactorySchematics.runtime.talos.dev",
            "image-factory-schematic",
        ),
    )
    assert res.spec["schematicId"] == lab114.info["schematic_id"]
    assert res.spec["flavor"] == "Image Factory" and res.spec["apiUrl"].startswith("https://")


def test_1_14_configs_are_multi_document(aio, lab114):
    config = call(aio, lab114, lambda c: c.machine_config(lab114.nodes[0]))
    kinds = {d.get("kind") for d in docs_of(config)}
    assert {"KubeletConfig", "KubeAPIServerConfig", "DiscoveryIdentityConfig"} <= kinds
    assert call(aio, lab114, lambda c: c.kubelet_image(lab114.nodes[0])).endswith(":v1.37.0-rc.0")


def test_no_factory_schematic_means_no_extensions(aio, lab_factory):
    plain = lab_factory("--nodes", "1", "--no-factory-schematic", name="plain")

    async def fn(c):
        return await c.schematic(plain.nodes[0]), await c.extension_statuses(plain.nodes[0])

    schematic, exts = call(aio, plain, fn)
    assert schematic is None and exts == []
    config = call(aio, plain, lambda c: c.machine_config(plain.nodes[0]))
    assert b"ghcr.io/siderolabs/installer:v1.9.5" in config
    plain.stop()


def test_configs_are_realistic_across_a_cluster(aio, lab_factory):
    """Generated at 1.9.5 with one secrets bundle, upgraded, then customized per node."""
    big = lab_factory("--nodes", "12", "--controlplanes", "3", "--seed", "3", name="realistic")

    async def fn(c):
        return [await c.machine_config(n) for n in big.nodes]

    configs = call(aio, big, fn)
    parsed = [docs_of(c) for c in configs]
    legacy = [p[0] for p in parsed]
    # one cluster: shared identity and CA, control planes hold the CA keys
    assert len({d["cluster"]["id"] for d in legacy}) == 1
    assert len({d["machine"]["ca"]["crt"] for d in legacy}) == 1
    assert all(d["machine"]["ca"]["key"] for d in legacy[:3])
    assert all(d["machine"]["ca"]["key"] == "" for d in legacy[3:])
    # generated for the initial contract (1.9: legacy feature fields), upgraded images
    assert all(d["machine"]["features"]["stableHostname"] is True for d in legacy)
    assert all(d["machine"]["kubelet"]["image"].endswith(":v1.34.1") for d in legacy)
    assert all(d["cluster"]["apiServer"]["image"].endswith(":v1.34.1") for d in legacy[:3])
    assert all(d["machine"]["install"]["image"].endswith(":v1.9.5") for d in legacy)
    # seeded operator customizations appear across the cluster
    interfaces = [i for d in legacy for i in d["machine"].get("network", {}).get("interfaces", [])]
    assert any(i.get("vlans") for i in interfaces)
    assert any(d["machine"]["kubelet"].get("extraArgs") for d in legacy)
    assert any(d["machine"].get("registries", {}).get("mirrors") for d in legacy)
    assert any(d["machine"].get("sysctls") for d in legacy)
    assert all(d["machine"]["nodeLabels"].get("topology.kubernetes.io/zone") for d in legacy)
    assert any(doc.get("kind") == "ExtensionServiceConfig" for p in parsed for doc in p)
    assert len(set(configs)) == len(configs)
    # every node accepts its own config back unchanged, live
    results = call(
        aio,
        big,
        lambda c: c.map_nodes(
            big.nodes, lambda n: c.apply_configuration(n, configs[big.nodes.index(n)])
        ),
    )
    assert {r.mode for r in results.values()} == {ApplyMode.NO_REBOOT}
    big.stop()
