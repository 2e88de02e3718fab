"""The committed providers/wire tree is exactly what proto/generate.py produces, and it serves
the gRPC paths the real Talos and Omni servers answer on."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from tests.paths import REPO

WIRE = REPO / "providers" / "wire"


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "omniport_proto_generate", REPO / "proto" / "generate.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> dict[str, bytes]:
    files = [*root.rglob("*.py"), *root.rglob("*.pyi")]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def test_regenerated_tree_matches_committed(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    generator = _load_generator()
    out = tmp_path / "wire"
    generator.generate(out)
    fresh, committed = _tree(out), _tree(WIRE)
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"run `python proto/generate.py`; stale: {stale}"


def test_generator_refuses_foreign_directory(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    generator = _load_generator()
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not written by proto/generate.py"):
        generator.generate(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_every_proto_has_a_module_in_a_package() -> None:
    for proto in (REPO / "proto").rglob("*.proto"):
        rel = proto.relative_to(REPO / "proto").with_suffix("")
        module = WIRE / rel.parent / f"{rel.name}_pb2.py"
        assert module.is_file(), module
        for parent in [module.parent, *module.parent.parents]:
            if parent == WIRE.parent:
                break
            assert (parent / "__init__.py").is_file(), parent


EXPECTED_PATHS = {
    "providers.wire.machine.machine_grpc.MachineServiceStub": [
        "/machine.MachineService/ApplyConfiguration",
        "/machine.MachineService/Bootstrap",
        "/machine.MachineService/EtcdMemberList",
        "/machine.MachineService/EtcdStatus",
        "/machine.MachineService/Hostname",
        "/machine.MachineService/Kubeconfig",
        "/machine.MachineService/ServiceList",
        "/machine.MachineService/Version",
    ],
    "providers.wire.cluster.cluster_grpc.ClusterServiceStub": [
        "/cluster.ClusterService/HealthCheck",
    ],
    "providers.wire.v1alpha1.state_grpc.StateStub": [
        "/cosi.resource.State/Create",
        "/cosi.resource.State/Destroy",
        "/cosi.resource.State/Get",
        "/cosi.resource.State/List",
        "/cosi.resource.State/Teardown",
        "/cosi.resource.State/TeardownAndDestroy",
        "/cosi.resource.State/Update",
        "/cosi.resource.State/Watch",
    ],
}


def _stub_paths(dotted: str) -> list[str]:
    module_name, _, cls_name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)

    class _FakeChannel:  # the stub only stores it; no call is made
        pass

    stub = cls(_FakeChannel())
    return sorted(v.name for v in vars(stub).values() if hasattr(v, "name"))


@pytest.mark.parametrize("stub", sorted(EXPECTED_PATHS))
def test_service_paths(stub: str) -> None:
    assert _stub_paths(stub) == sorted(EXPECTED_PATHS[stub])


def test_server_bases_map_the_same_paths() -> None:
    from omniport.providers.wire.v1alpha1 import state_grpc

    class _State(state_grpc.StateBase):
        pass

    _State.__abstractmethods__ = frozenset()
    mapping = _State().__mapping__()
    assert sorted(mapping) == sorted(EXPECTED_PATHS["providers.wire.v1alpha1.state_grpc.StateStub"])
    # List and Watch are server streams, the rest unary.
    from grpclib.const import Cardinality

    assert mapping["/cosi.resource.State/List"].cardinality is Cardinality.UNARY_STREAM
    assert mapping["/cosi.resource.State/Watch"].cardinality is Cardinality.UNARY_STREAM
    assert mapping["/cosi.resource.State/Get"].cardinality is Cardinality.UNARY_UNARY


def test_wire_field_numbers_and_presence() -> None:
    from omniport.providers.wire.machine import machine_pb2
    from omniport.providers.wire.omni.specs import omni_pb2
    from omniport.providers.wire.v1alpha1 import state_pb2

    apply = machine_pb2.ApplyConfigurationRequest.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in apply.items()} == {
        "data": 1,
        "mode": 4,
        "dry_run": 5,
        "try_mode_timeout": 6,
    }
    assert machine_pb2.ApplyConfigurationRequest.Mode.Value("TRY") == 4
    # proto3 `optional` gives presence: an empty string is not the same as absent.
    watch = state_pb2.WatchRequest()
    assert not watch.HasField("id")
    watch.id = ""
    assert watch.HasField("id")
    opts = state_pb2.UpdateOptions()
    assert not opts.HasField("expected_phase")
    status = omni_pb2.MachineStatusSpec.DESCRIPTOR.fields_by_name
    assert status["schematic"].number == 14
    assert omni_pb2.MachineStatusSpec.Schematic.DESCRIPTOR.fields_by_name["full_id"].number == 9
    assert omni_pb2.ClusterSpec.DESCRIPTOR.fields_by_name["talos_version"].number == 3


def test_spec_bytes_round_trip_keeps_unknown_fields() -> None:
    from omniport.providers.wire.omni.specs import omni_pb2

    # Field 99 is not in our subset; decoding and re-encoding must keep it.
    extra = bytes([0x9A, 0x06, 0x02]) + b"hi"  # field 99, length-delimited, "hi"
    spec = omni_pb2.ClusterSpec(kubernetes_version="1.31.4", talos_version="1.8.3")
    raw = spec.SerializeToString() + extra
    again = omni_pb2.ClusterSpec.FromString(raw)
    assert again.talos_version == "1.8.3"
    assert again.SerializeToString().endswith(extra)
