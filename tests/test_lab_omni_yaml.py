"""The lab's Omni renders ``yaml_spec`` byte for byte as PyYAML's pure-Python ``safe_dump``.

``lab/omni_types.spec_yaml`` uses libyaml's emitter when the value is one it writes alike, and
reuses the text of an identical spec; both are speed-ups only, so every case here compares with
the reference ``yaml.safe_dump(spec_to_plain(msg), sort_keys=False)``.
"""

from __future__ import annotations

import string

import pytest
import yaml
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from omniport.lab.omni_types import TYPES, emits_alike, spec_to_plain, spec_yaml
from omniport.providers.wire.omni.specs import omni_pb2, siderolink_pb2

PATCH = """apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: nut-client
configFiles:
    - content: |
        MONITOR ups@10.10.0.5 1 remote password secondary
      mountPath: /usr/local/etc/nut/upsmon.conf
---
version: v1alpha1
machine:
    kubelet:
        image: ghcr.io/siderolabs/kubelet:v1.34.1
        extraArgs:
            max-pods: "150"
    network:
        hostname: worker-997
        interfaces:
            - interface: eth0
              addresses:
                - 10.13.0.251/16
    install:
        image: 127.0.0.1:39561/metal-installer/c9078f9419961640c712a8bf2bb9174933dfcf1da3:v1.9.5
    nodeLabels:
        topology.kubernetes.io/zone: zone-a
\tlab.omniport.dev/note: "caf\u00e9 \u2028 \U0001f600"
"""


def reference(msg: Message) -> str:
    return yaml.safe_dump(spec_to_plain(msg), sort_keys=False)


def representative() -> list[Message]:
    """One spec of every served type, filled the way an import fills them, plus hard strings."""
    status = omni_pb2.MachineStatusSpec(
        talos_version="v1.11.5",
        management_address="fdae:41e4:649b:9303::1",
        connected=True,
        cluster="lab",
        role=omni_pb2.MachineStatusSpec.CONTROL_PLANE,
    )
    status.network.hostname = "cp-1"
    status.network.addresses.append("127.1.0.1")
    status.schematic.full_id = "c9078f9419961640c712a8bf2bb9174933dfcf1da383fd8ea2b7dc21493f8bac"
    status.image_labels["zone"] = "a b"
    status.image_labels["rack"] = "r\u00e9"
    cluster_status = omni_pb2.ClusterStatusSpec(
        available=True, phase=omni_pb2.ClusterStatusSpec.RUNNING, talos_version="1.11.5"
    )
    cluster_status.machines.total = 1000
    specs: list[Message] = [
        omni_pb2.ConfigPatchSpec(data=PATCH),
        omni_pb2.ConfigPatchSpec(data="version: v1alpha1\ncluster:\n    apiServer: {}\n"),
        omni_pb2.ConfigPatchSpec(data="x" * 300 + " " + "y: z " * 40),
        omni_pb2.ImportedClusterSecretsSpec(data="cluster:\n  id: abc\n  secret: 'q+/=='\n" * 30),
        omni_pb2.ClusterSpec(talos_version="1.11.5", kubernetes_version="1.34.1"),
        omni_pb2.MachineSetNodeSpec(),
        omni_pb2.ClusterMachineSpec(kubernetes_version="1.34.1"),
        omni_pb2.MachineSpec(management_address="fdae:41e4:649b:9303::1", connected=True),
        status,
        cluster_status,
        siderolink_pb2.SiderolinkSpec(node_subnet="fdae:41e4:649b:9303::1/64", connected=True),
        siderolink_pb2.DefaultJoinTokenSpec(token_id="w7uVuW3zbVKIYQuzEcyetAHeYMeo5q2L9RvkAzfsBu"),
        omni_pb2.TalosVersionSpec(
            version="1.11.5", compatible_kubernetes_versions=["1.32.4", "1.33.5", "1.34.1"]
        ),
    ]
    return specs


@pytest.mark.parametrize("msg", representative(), ids=lambda m: m.DESCRIPTOR.name)
def test_spec_yaml_is_the_pure_python_dump(msg: Message) -> None:
    expected = reference(msg)
    assert spec_yaml(msg) == expected
    data = msg.SerializeToString()
    assert spec_yaml(msg, data) == expected
    assert spec_yaml(msg, data) == expected  # a second time: from the cache


def test_every_served_type_renders_like_the_reference() -> None:
    for info in TYPES.values():
        if info.spec is None:
            continue
        empty = info.spec()
        assert spec_yaml(empty, empty.SerializeToString()) == reference(empty), info.type


def test_a_changed_spec_is_rendered_again() -> None:
    msg = omni_pb2.ConfigPatchSpec(data="a: 1\n")
    first = spec_yaml(msg, msg.SerializeToString())
    msg.data = "a: 2\n"
    second = spec_yaml(msg, msg.SerializeToString())
    assert first != second
    assert second == reference(msg)


def test_hard_strings_take_the_pure_python_emitter() -> None:
    for text in ("tab\there", "line\nbreak", "caf\u00e9", "\x85", "\u2028", "bell\x07"):
        assert not emits_alike({"data": text})
    assert emits_alike({"a": ["b c", 1, None, True, 1.5, "", "q: 'x' # y"], "n": {"m": "-"}})


# libyaml folds long double-quoted scalars differently; printable ASCII is never double-quoted
_TOKENS = [" ", "  ", ": ", " #", "- ", "? ", "'", '"', "---", "...", "~", "=", "<<", "\\"]
_TOKENS += ["true", "null", "0x1F", "1e3", ".inf", "2001-12-14", "12:30", "+1", "-", "&", "*"]
_TOKENS += ["!", "|", ">", "%", "@", "`", "{", "}", "[", "]", ",", "a", "bb", "0", "x" * 40]
_ascii = st.one_of(
    st.text(st.sampled_from([chr(c) for c in range(0x20, 0x7F)]), max_size=200),
    st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join),
)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(), _ascii)
_keys = st.text(string.ascii_lowercase, min_size=1, max_size=30)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=12,
)


@pytest.mark.skipif(not hasattr(yaml, "CSafeDumper"), reason="PyYAML was built without libyaml")
@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_libyaml_writes_printable_ascii_values_alike(plain: dict) -> None:
    assert emits_alike(plain)
    c_text = yaml.dump(plain, Dumper=yaml.CSafeDumper, sort_keys=False)
    assert c_text == yaml.safe_dump(plain, sort_keys=False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.text(max_size=60))
def test_any_patch_text_renders_like_the_reference(data: str, address: str) -> None:
    for msg in (
        omni_pb2.ConfigPatchSpec(data=data),
        omni_pb2.MachineSpec(management_address=address, connected=bool(len(data) % 2)),
    ):
        assert spec_yaml(msg, msg.SerializeToString()) == reference(msg)
