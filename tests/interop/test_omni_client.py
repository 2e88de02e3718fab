"""Omni's own Go client and importer (client v1.9.3, ``tests/interop/omni``) against the lab.

The ``omni`` program is Omni's client as omnictl runs it (gzip on every message, siderov1
service-account signatures, system roots with the lab's CA through ``SSL_CERT_FILE``):

- ``list``/``get`` read what omniport's Python client reads, resource for resource;
- ``clusterimport``'s dry run passes its validations against a lab and changes nothing;
- a full ``clusterimport`` Run on lab A and ``omniport plan`` + ``apply`` on lab B (same
  ``lab up`` arguments and seed) leave the same Omni resources and node-config changes, except
  for the differences in ``KNOWN_DIFFERENCES``, each with its reason; a new one fails;
- the real ``clusterimport.Abort`` after ``omniport apply``, and ``omniport abort`` after a real
  import, each leave the world the other tool expects.

The labs answer as Omni v1.9.3 (``--omni-version``), the release the client is built from. The
client of that release ignores ``--initial-*`` versions (fixed upstream in v1.10.0): its
baseline is always the current versions, so omniport's spec is given the same.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from google.protobuf import json_format

from omniport.lab.control import patch
from tests.conftest import LabHandle
from tests.interop import counts, oracles

LAB_ARGS = ("--nodes", "4", "--controlplanes", "2", "--seed", "7", "--omni-version", "1.9.3")
# Talos versions the twin labs run (the lab's default is v1.11.5)
TWIN_TALOS = ["v1.10.7", "v1.11.5", "v1.13.8"]
CLUSTER = "lab"
P = "omni.sidero.dev/"
OWNERSHIP = "omniport.dev/import"

# the types an import makes or makes the lab's controllers make, as the Go client dumps them
IMPORT_TYPES = [
    "Clusters.omni.sidero.dev",
    "ClusterStatuses.omni.sidero.dev",
    "MachineSets.omni.sidero.dev",
    "MachineSetNodes.omni.sidero.dev",
    "ConfigPatches.omni.sidero.dev",
    "ClusterMachines.omni.sidero.dev",
    "Links.omni.sidero.dev",
    "Machines.omni.sidero.dev",
    "MachineStatuses.omni.sidero.dev",
]
SEED_TYPES = [
    "DefaultJoinTokens.omni.sidero.dev",
    "SiderolinkAPIConfigs.omni.sidero.dev",
    "TalosVersions.omni.sidero.dev",
    "FeaturesConfigs.omni.sidero.dev",
    "SysVersions.system.sidero.dev",
    "Notifications.omni.sidero.dev",
]

KNOWN_DIFFERENCES: dict[tuple[str, ...], str] = {
    ("annotation only in omniport", "Clusters.omni.sidero.dev", OWNERSHIP): (
        "omniport marks what its apply created, so rollback deletes only its own resources"
    ),
    ("annotation only in omniport", "MachineSets.omni.sidero.dev", OWNERSHIP): "as above",
    ("annotation only in omniport", "MachineSetNodes.omni.sidero.dev", OWNERSHIP): "as above",
    ("annotation only in omniport", "ConfigPatches.omni.sidero.dev", OWNERSHIP): "as above",
    ("patch field only in the real import", "v1alpha1", "machine.install.disk"): (
        "omniport strips it as Omni's main denylist does (after v1.10.4); the v1.9.3 importer "
        "keeps it and Omni v1.9.3 accepts it; Omni renders the install disk itself"
    ),
    ("patch text layout",): (
        "same documents and values; the importer re-encodes each patch with sorted keys and "
        "2-space indent, omniport keeps Talos's document order and 4-space indent"
    ),
    ("node config layout",): (
        "same documents and values; the importer re-encodes the whole config through Talos's "
        "encoder (field order, empty lists such as routes: []), omniport keeps the node's live "
        "bytes and appends the three join documents"
    ),
}


# ---- the driver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Driver:
    path: Path

    def run(self, lab: LabHandle, *args: str, timeout: float = 300) -> tuple[int, Any, str]:
        """Run ``omni -lab DIR ARGS`` from the lab's directory; (exit code, JSON, stderr)."""
        proc = subprocess.run(
            [str(self.path), "-lab", str(lab.dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=lab.dir,
        )
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc.returncode, out, proc.stderr

    def ok(self, lab: LabHandle, *args: str) -> Any:
        code, out, err = self.run(lab, *args)
        assert code == 0, f"omni {' '.join(args)} failed ({code}): {err}\n{out}"
        return out

    def list(self, lab: LabHandle, type_: str) -> list[dict[str, Any]]:
        return list(self.ok(lab, "list", type_))


def omni_dictionary() -> Path:
    """Omni's zstd dictionary in the client module the driver was built from (not shipped)."""
    cache = os.environ.get("OMNIPORT_GOMODCACHE") or str(Path.home() / ".cache/omniport/gomod")
    path = (
        Path(cache)
        / f"github.com/siderolabs/omni/client@{oracles.OMNI_CLIENT}"
        / "pkg/compression/data/config.1.zdict"
    )
    assert path.is_file(), f"Omni's client module is not in the module cache: {path}"
    return path


def lab_args(*extra: str) -> tuple[str, ...]:
    """``lab up`` arguments: LAB_ARGS, Omni's dictionary (so compressed patches are read)."""
    return (*LAB_ARGS, "--omni-zstd-dict", str(omni_dictionary()), *extra)


@pytest.fixture(scope="module")
def driver() -> Driver:
    """The ``omni`` program, built alone (Go missing: skip locally, fail in CI)."""
    try:
        oracles.build("omni")
    except oracles.GoMissing as err:
        if oracles.in_ci():
            pytest.fail(f"interop checks need Go in CI: {err}")
        pytest.skip(f"interop checks need Go: {err}")
    return Driver(oracles.BIN / "omni")


# ---- helpers ---------------------------------------------------------------------------------


def omniport(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "omniport"
    proc = subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False
    )
    assert proc.returncode == 0, f"omniport {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc


def current_versions_spec(lab: LabHandle) -> Path:
    """The lab's spec with the initial versions set to the current ones (see the docstring)."""
    spec = yaml.safe_load((lab.dir / "import.yaml").read_text())
    spec["versions"]["initialTalos"] = spec["versions"]["talos"]
    spec["versions"]["initialKubernetes"] = spec["versions"]["kubernetes"]
    path = lab.dir / "import-current.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def configs(lab: LabHandle) -> dict[str, str]:
    return {n["address"]: n["config"] for n in lab.status(with_configs=True)["nodes"]}


def lab_values(driver: Driver, lab: LabHandle) -> dict[str, str]:
    """What differs between two labs of one seed whatever the tools do: ports and the token."""
    spec = yaml.safe_load((lab.dir / "import.yaml").read_text())
    token = driver.ok(lab, "get", "DefaultJoinTokens.omni.sidero.dev", "default")["spec"]
    return {
        urlsplit(spec["imageFactory"]["url"]).netloc: "<factory>",
        urlsplit(spec["omni"]["url"]).netloc: "<omni>",
        token["token_id"]: "<join-token>",
    }


def normalize(value: Any, values: dict[str, str]) -> Any:
    text = json.dumps(value, sort_keys=True)
    for raw, placeholder in values.items():
        text = text.replace(raw, placeholder)
    return json.loads(text)


def prune(tree: Any) -> Any:
    """Drop empty lists and mappings (Talos's encoder writes some, YAML readers mean none)."""
    if isinstance(tree, dict):
        out = {k: prune(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    if isinstance(tree, list):
        return [prune(v) for v in tree]
    return tree


def documents(text: str) -> dict[str, Any]:
    """A multi-document config or patch by document key (``v1alpha1``, ``Kind/name``)."""
    out = {}
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        if "kind" in doc:
            key = "/".join(p for p in (doc["kind"], doc.get("name")) if p)
        else:
            key = "v1alpha1"
        out[key] = doc
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def patch_paths(data: str) -> dict[tuple[str, str], Any]:
    return {
        (doc, path): value
        for doc, tree in documents(data).items()
        for path, value in flatten(prune(tree)).items()
    }


def config_delta(before: str, after: str) -> dict[str, Any]:
    """What an import changed in a node's config, document by document, values pruned."""
    old, new = documents(before), documents(after)
    delta: dict[str, Any] = {}
    for key in old.keys() | new.keys():
        a, b = prune(old.get(key)), prune(new.get(key))
        if a != b:
            delta[key] = {"before": a, "after": b}
    return delta


# ---- list / get against omniport's client ----------------------------------------------------


# spec fields the lab serves that client v1.9.3's protos do not have (newer Omni); Go drops them
NEWER_THAN_CLIENT = {
    "ClusterStatuses.omni.sidero.dev": {
        "disable_public_discovery_service",
        "initial_talos_version",
    },
}


def _python_view(res: Any) -> dict[str, Any]:
    spec = json_format.MessageToDict(
        res.spec, preserving_proto_field_name=True, use_integers_for_enums=True
    )
    for name in NEWER_THAN_CLIENT.get(res.type, ()):
        spec.pop(name, None)
    return {
        "namespace": res.namespace,
        "type": res.type,
        "id": res.id,
        "version": res.version,
        "phase": res.phase,
        "owner": res.owner,
        "labels": dict(res.labels),
        "annotations": dict(res.annotations),
        "finalizers": list(res.finalizers),
        "spec": spec,
    }


def _go_view(item: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in item.items() if k != "compressed"}
    return view


def _comparable(view: dict[str, Any]) -> dict[str, Any]:
    """protojson and MessageToDict agree on names; drop default values either may omit."""
    out = dict(view)
    out["spec"] = prune(_drop_defaults(view["spec"]))
    return out


def _drop_defaults(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _drop_defaults(v) for k, v in tree.items() if v not in (0, "", False, None)}
    if isinstance(tree, list):
        return [_drop_defaults(v) for v in tree]
    return tree


def check_list_get(driver: Driver, lab: LabHandle, aio: Any, types: list[str]) -> int:
    """Every resource of ``types``: Go list == Go get == Python list; returns how many."""

    async def python_side() -> dict[str, list[Any]]:
        client = lab.omni()
        try:
            return {t: await client.list(t) for t in types}
        finally:
            client.close()

    python = aio(python_side())
    compared = 0
    for type_ in types:
        go = sorted(driver.list(lab, type_), key=lambda r: r["id"])
        py = sorted((_python_view(r) for r in python[type_]), key=lambda r: r["id"])
        assert [r["id"] for r in go] == [r["id"] for r in py], type_
        for g, p in zip(go, py, strict=True):
            assert _comparable(_go_view(g)) == _comparable(p), (type_, g["id"])
            if compared < 40 or g is go[0]:  # a get per type, and the first few resources
                ns = ["-namespace", g["namespace"]]
                one = driver.ok(lab, *ns, "get", type_, g["id"])
                assert _comparable(_go_view(one)) == _comparable(p), (type_, g["id"])
            compared += 1
    return compared


# ---- the dry run -----------------------------------------------------------------------------


def test_dry_run_passes_and_changes_nothing(
    driver: Driver, lab_factory: Callable[..., LabHandle], aio: Any
) -> None:
    lab = lab_factory(*lab_args(), name="omni-dry")
    before = configs(lab)
    compared = check_list_get(driver, lab, aio, SEED_TYPES)
    counts.record("omni-list-get", "omni", tried=compared, agreed=compared)

    code, result, err = driver.run(lab, "import", "--dry-run")
    assert code == 0 and result["ok"], (result, err)
    assert result["cluster"] == CLUSTER and result["dry_run"]
    log = result["log"]
    assert "validating cluster status..." in log and "checking cluster health..." in log
    assert (
        f"importing cluster {CLUSTER!r} with 4 nodes (2 control planes, 2 workers)".replace(
            "'", '"'
        )
        in log
    )
    assert "failed to validate" not in log
    assert configs(lab) == before
    for type_ in ("Clusters.omni.sidero.dev", "MachineSets.omni.sidero.dev"):
        assert driver.list(lab, type_) == []
    counts.record("omni-dry-run", "omni", tried=1, agreed=1)


def test_dry_run_fails_validation_like_omnictl(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """The same dry run fails its schematic validation when nodes run plain images."""
    lab = lab_factory(*lab_args("--no-factory-schematic"), name="omni-dry-plain")
    code, result, _ = driver.run(lab, "import", "--dry-run")
    assert code != 0 and result["validation_error"], result
    assert "schematic ID missing" in result["error"]
    counts.record("omni-dry-run", "omni", tried=1, agreed=1)


# ---- full import vs omniport apply -----------------------------------------------------------


@dataclass
class World:
    lab: LabHandle
    before: dict[str, str]
    after: dict[str, str]
    resources: dict[tuple[str, str], dict[str, Any]]
    values: dict[str, str]


def dump_world(driver: Driver, lab: LabHandle) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for type_ in IMPORT_TYPES:
        for item in driver.list(lab, type_):
            out[(type_, item["id"])] = item
    return out


def twin_worlds(
    driver: Driver,
    lab_factory: Callable[..., LabHandle],
    args: tuple[str, ...],
    prepare: Callable[[LabHandle], None] | None = None,
    spec_for: Callable[[LabHandle], Path] = current_versions_spec,
) -> tuple[World, World]:
    """Two labs of the same arguments (each ``prepare``d alike): the real import on the first,
    omniport plan + apply on the second."""
    real = lab_factory(*args, name="omni-real")
    ours = lab_factory(*args, name="omni-ours")
    if prepare is not None:
        prepare(real)
        prepare(ours)
    before_real, before_ours = configs(real), configs(ours)

    backup = real.dir / "real-backup.zip"
    code, result, err = driver.run(real, "import", "-backup-output", str(backup))
    assert code == 0 and result["ok"], (result, err)
    spec = spec_for(ours)
    omniport("plan", str(spec), "-o", "plan.json", cwd=ours.dir)
    omniport("apply", "plan.json", "--auto-approve", cwd=ours.dir)
    return (
        World(real, before_real, configs(real), dump_world(driver, real), lab_values(driver, real)),
        World(ours, before_ours, configs(ours), dump_world(driver, ours), lab_values(driver, ours)),
    )


@pytest.fixture(scope="module", params=TWIN_TALOS)
def worlds(
    request: pytest.FixtureRequest, driver: Driver, lab_factory: Callable[..., LabHandle]
) -> tuple[World, World]:
    return twin_worlds(driver, lab_factory, lab_args("--talos-version", request.param))


def resource_differences(a: dict[str, Any], b: dict[str, Any]) -> set[tuple[str, ...]]:
    """How one resource of the real import (a) and of omniport's apply (b) differ."""
    found: set[tuple[str, ...]] = set()
    type_, id_ = a["type"], a["id"]
    if a["labels"] != b["labels"]:
        found.add(("labels differ", type_, id_))
    for name in a["annotations"].keys() | b["annotations"].keys():
        if name not in a["annotations"]:
            found.add(("annotation only in omniport", type_, name))
        elif name not in b["annotations"]:
            found.add(("annotation only in the real import", type_, name))
        elif a["annotations"][name] != b["annotations"][name]:
            found.add(("annotation differs", type_, name))
    if type_ == "ConfigPatches.omni.sidero.dev":
        pa, pb = patch_paths(a["spec"]["data"]), patch_paths(b["spec"]["data"])
        for doc, path in pa.keys() | pb.keys():
            if (doc, path) not in pb:
                found.add(("patch field only in the real import", doc, path))
            elif (doc, path) not in pa:
                found.add(("patch field only in omniport", doc, path))
            elif pa[(doc, path)] != pb[(doc, path)]:
                found.add(("patch value differs", doc, path))
        if a["spec"]["data"] != b["spec"]["data"]:
            found.add(("patch text layout",))
    elif a["spec"] != b["spec"]:
        found.add(("spec differs", type_, id_))
    # finalizers in the order the controllers got there: timing, in Omni as in the lab
    if a["phase"] != b["phase"] or sorted(a["finalizers"]) != sorted(b["finalizers"]):
        found.add(("phase or finalizers differ", type_, id_))
    return found


def node_differences(real: World, ours: World, address: str) -> set[tuple[str, ...]]:
    """How the import changed one node's config under each tool."""
    found: set[tuple[str, ...]] = set()
    delta_real = normalize(config_delta(real.before[address], real.after[address]), real.values)
    delta_ours = normalize(config_delta(ours.before[address], ours.after[address]), ours.values)
    if delta_real != delta_ours:
        found.add(("node config change differs", address))
    if not ours.after[address].startswith(ours.before[address]):
        found.add(("omniport rewrote the live config", address))
    if not real.after[address].startswith(real.before[address]):
        found.add(("node config layout",))
    return found


def compare_worlds(real: World, ours: World) -> tuple[set[tuple[str, ...]], int, int]:
    """The differences between the two worlds (as keys of KNOWN_DIFFERENCES); items compared,
    and items without any difference."""
    found: set[tuple[str, ...]] = set()
    tried = agreed = 0
    for key in sorted(real.resources.keys() | ours.resources.keys()):
        tried += 1
        if key not in ours.resources:
            diffs = {("only in the real import", *key)}
        elif key not in real.resources:
            diffs = {("only in omniport", *key)}
        else:
            diffs = resource_differences(
                normalize(real.resources[key], real.values),
                normalize(ours.resources[key], ours.values),
            )
        found |= diffs
        agreed += not diffs
    for address in sorted(real.before):
        tried += 1
        diffs = node_differences(real, ours, address)
        found |= diffs
        agreed += not diffs
    return found, tried, agreed


def test_real_import_and_omniport_apply_leave_the_same_world(worlds: tuple[World, World]) -> None:
    real, ours = worlds
    found, tried, agreed = compare_worlds(real, ours)
    counts.record("omni-import-vs-apply", "omni", tried=tried, agreed=agreed)
    assert found == set(KNOWN_DIFFERENCES), (
        f"new: {sorted(found - set(KNOWN_DIFFERENCES))}; "
        f"gone: {sorted(set(KNOWN_DIFFERENCES) - found)}"
    )


INITIAL_VERSION_DIFFERENCES: dict[tuple[str, ...], str] = {
    ("patch field only in omniport", "v1alpha1", path): (
        "omniport's baseline is generated at the spec's initial versions (Talos 1.9.5, "
        "Kubernetes 1.32.4), so its patches pin the current images; client v1.9.3 ignores "
        "--initial-* (fixed upstream in v1.10.0) and generates at the current versions"
    )
    for path in (
        "cluster.apiServer.image",
        "cluster.controllerManager.image",
        "cluster.proxy.image",
        "cluster.scheduler.image",
        "machine.kubelet.image",
    )
}


def test_with_the_labs_own_spec_only_the_initial_versions_differ(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """omniport planned from the lab's spec as written (initial versions older than current)."""
    real, ours = twin_worlds(
        driver, lab_factory, lab_args(), spec_for=lambda lab: lab.dir / "import.yaml"
    )
    found, tried, agreed = compare_worlds(real, ours)
    counts.record("omni-import-vs-apply", "omni", tried=tried, agreed=agreed)
    expected = set(KNOWN_DIFFERENCES) | set(INITIAL_VERSION_DIFFERENCES)
    assert found == expected, sorted(found ^ expected)


def test_both_imports_join_the_nodes_the_same_way(worlds: tuple[World, World]) -> None:
    """Each node gains exactly the three join documents, with the same values."""
    real, ours = worlds
    for world in (real, ours):
        for address in world.before:
            delta = normalize(
                config_delta(world.before[address], world.after[address]), world.values
            )
            assert set(delta) == {"SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig/omni-kmsg"}
            assert all(d["before"] is None for d in delta.values())
            api = delta["SideroLinkConfig"]["after"]["apiUrl"]
            assert api == "https://127.0.0.1:8090?jointoken=<join-token>", api


def test_list_and_get_agree_with_omniports_client(
    driver: Driver, worlds: tuple[World, World], aio: Any
) -> None:
    for world in worlds:
        compared = check_list_get(driver, world.lab, aio, IMPORT_TYPES)
        counts.record("omni-list-get", "omni", tried=compared, agreed=compared)


def test_real_backup_holds_the_live_configs(worlds: tuple[World, World]) -> None:
    real, _ = worlds
    names = {n["address"]: n["hostname"] for n in real.lab.info["nodes"]}
    with zipfile.ZipFile(real.lab.dir / "real-backup.zip") as zf:
        entries = {name: zf.read(name).decode() for name in zf.namelist()}
    assert sorted(entries) == sorted(f"{names[a]}-{a}.yaml" for a in real.before)
    for address, config in real.before.items():
        assert config_delta(config, entries[f"{names[address]}-{address}.yaml"]) == {}


# ---- cross-aborts ----------------------------------------------------------------------------


def cluster_resources(driver: Driver, lab: LabHandle) -> dict[str, list[str]]:
    left = {}
    for type_ in IMPORT_TYPES:
        ids = [r["id"] for r in driver.list(lab, type_)]
        if ids:
            left[type_] = ids
    return left


def test_real_abort_after_omniport_apply(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    lab = lab_factory(*lab_args(), name="omni-abort-real")
    before = configs(lab)
    spec = current_versions_spec(lab)
    omniport("plan", str(spec), "-o", "plan.json", cwd=lab.dir)
    applied = omniport("apply", "plan.json", "--auto-approve", cwd=lab.dir).stdout
    # the rollback plan is in the cluster's state directory, and apply says where
    undo = re.search(r"^To undo the import: omniport rollback (\S+)$", applied, re.M)
    assert undo, applied
    rollback_file = Path(undo.group(1))
    assert rollback_file.is_file() and lab.dir not in rollback_file.parents

    result = driver.ok(lab, "abort", CLUSTER)
    assert result["ok"] and result["log"].count("removing link for machine") == 4
    # Omni is left without the cluster, its machines and their links
    assert cluster_resources(driver, lab) == {}
    # locked and tainted by importing while it tears down: Omni resets (wipes) no machine
    assert not any(n["maintenance"] for n in lab.status()["nodes"])
    # the real abort leaves the join documents on the nodes, as omnictl documents
    after = configs(lab)
    for address, config in after.items():
        assert set(config_delta(before[address], config)) == {
            "SideroLinkConfig",
            "EventSinkConfig",
            "KmsgLogConfig/omni-kmsg",
        }
    # omniport's rollback plan still runs: nodes back to their backup bytes, Omni parts gone
    out = omniport("rollback", str(rollback_file), "--auto-approve", cwd=lab.dir).stdout
    assert "already gone" in out
    assert configs(lab) == before
    # and the real importer finds a world it can import again
    code, result, err = driver.run(lab, "import", "--dry-run")
    assert code == 0 and result["ok"], (result, err)
    counts.record("omni-cross-abort", "omni", tried=1, agreed=1)


def test_omniport_abort_after_real_import(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    lab = lab_factory(*lab_args(), name="omni-abort-ours")
    before = configs(lab)
    code, result, err = driver.run(lab, "import", "-backup-output", str(lab.dir / "backup.zip"))
    assert code == 0 and result["ok"], (result, err)

    omniport("abort", CLUSTER, "--spec", "import.yaml", "--auto-approve", cwd=lab.dir)
    assert cluster_resources(driver, lab) == {}
    assert not any(n["maintenance"] for n in lab.status()["nodes"])
    # omniport also removes the join documents the real import applied: what remains is the
    # node's config as the importer rewrote it, equal in content to the live one before
    for address, config in configs(lab).items():
        assert config_delta(before[address], config) == {}, address
    statuses = {n["address"]: n["connected"] for n in lab.status()["nodes"]}
    assert not any(statuses.values())
    # the real importer can import again
    code, result, err = driver.run(lab, "import", "--dry-run")
    assert code == 0 and result["ok"], (result, err)
    counts.record("omni-cross-abort", "omni", tried=1, agreed=1)


def test_deleting_a_cluster_after_a_real_unlock_wipes_its_nodes(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """The order abort avoids: omnictl's unlock drops the lock, the real Abort then refuses
    (it needs the lock), and deleting the cluster anyway (as Omni's UI does) makes Omni reset
    every machine: the lab wipes them, as Omni would."""
    lab = lab_factory(*lab_args(), name="omni-unlock-delete")
    code, result, err = driver.run(lab, "import", "-backup-output", str(lab.dir / "bk.zip"))
    assert code == 0 and result["ok"], (result, err)
    driver.ok(lab, "unlock", CLUSTER)
    code, result, err = driver.run(lab, "abort", CLUSTER)
    assert code != 0 and "is not locked" in (err + json.dumps(result)), (result, err)
    assert not any(n["maintenance"] for n in lab.status()["nodes"])

    async def delete() -> None:
        async with lab.omni() as op:
            await op.teardown("Clusters.omni.sidero.dev", CLUSTER)
            await op.wait_destroyed("Clusters.omni.sidero.dev", CLUSTER, timeout=60)
        await asyncio.sleep(0.1)  # let the TLS close finish before the loop ends

    asyncio.run(delete())
    nodes = lab.status(with_configs=True)["nodes"]
    assert all(n["maintenance"] and n["config"] == "" for n in nodes), nodes
    counts.record("omni-reset-on-delete", "omni", tried=len(nodes), agreed=len(nodes))


def test_cluster_machines_follow_the_joins_of_a_real_import(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """The importer creates MachineSetNodes without waiting for joins; Omni makes each
    ClusterMachine once that machine's status exists. With slow joins the real importer
    still succeeds and the ClusterMachines arrive as the machines do."""
    lab = lab_factory(*lab_args("--omni-join-ms", "1500"), name="omni-slow-join")
    code, result, err = driver.run(lab, "import", "-backup-output", str(lab.dir / "bk.zip"))
    assert code == 0 and result["ok"], (result, err)
    machines = {r["id"] for r in driver.list(lab, "ClusterMachines.omni.sidero.dev")}
    statuses = {r["id"] for r in driver.list(lab, "MachineStatuses.omni.sidero.dev")}
    assert machines <= statuses
    nodes = {r["id"] for r in driver.list(lab, "MachineSetNodes.omni.sidero.dev")}
    deadline = time.monotonic() + 30
    while machines != nodes:
        assert time.monotonic() < deadline, (machines, nodes)
        time.sleep(0.2)
        machines = {r["id"] for r in driver.list(lab, "ClusterMachines.omni.sidero.dev")}
    counts.record("omni-slow-join", "omni", tried=len(nodes), agreed=len(nodes))


# ---- compressed patches ----------------------------------------------------------------------


def test_compressed_patches_are_read_like_omni(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """Nodes with many labels make patches of 2048 bytes or more, which Omni's client sends
    zstd-compressed with Omni's dictionary: the lab validates what they hold and serves them as
    sent, and they hold what omniport's plain patches hold (the same known differences)."""
    labels = "".join(f"      example.com/label-{i:03d}: value-{i:03d}\n" for i in range(60))

    def many_labels(lab: LabHandle) -> None:
        for address in lab.nodes:
            patch(lab.dir, address, "machine:\n  nodeLabels:\n" + labels)

    real, ours = twin_worlds(driver, lab_factory, lab_args(), many_labels)
    patches = [r for (t, _), r in real.resources.items() if t == "ConfigPatches.omni.sidero.dev"]
    compressed = [p for p in patches if p.get("compressed")]
    assert len(compressed) == len(real.lab.nodes), [len(p["spec"]["data"]) for p in patches]
    assert all(len(p["spec"]["data"]) >= 2048 for p in compressed)
    found, tried, agreed = compare_worlds(real, ours)
    counts.record("omni-compressed-patch", "omni", tried=len(compressed), agreed=len(compressed))
    counts.record("omni-import-vs-apply", "omni", tried=tried, agreed=agreed)
    assert found == set(KNOWN_DIFFERENCES), sorted(found ^ set(KNOWN_DIFFERENCES))


# ---- unlock ----------------------------------------------------------------------------------


def test_unlock_after_real_import_renders_the_live_configs(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """omnictl's unlock hands the cluster to Omni, which pushes its base plus the importer's
    patches: each node keeps its config except the control-plane endpoint (now Omni's load
    balancer), and the join documents."""
    lab = lab_factory(*lab_args(), name="omni-unlock")
    before = configs(lab)
    code, result, err = driver.run(lab, "import", "-backup-output", str(lab.dir / "bk.zip"))
    assert code == 0 and result["ok"], (result, err)
    driver.ok(lab, "unlock", CLUSTER)
    cluster = driver.ok(lab, "get", "Clusters.omni.sidero.dev", CLUSTER)
    assert cluster["annotations"] == {}
    changed = unlock_changes(lab, before)
    after = configs(lab)
    for address, config in after.items():
        delta = config_delta(before[address], config)
        assert set(delta) == {
            "v1alpha1",
            "SideroLinkConfig",
            "EventSinkConfig",
            "KmsgLogConfig/omni-kmsg",
        }, address
        assert changed[address] == {"cluster.controlPlane.endpoint"}, (address, changed)
        endpoint = flatten(delta["v1alpha1"]["after"])["cluster.controlPlane.endpoint"]
        assert endpoint.startswith("https://[fdae:41e4:649b:9303::1]:"), endpoint
    counts.record("omni-unlock-render", "omni", tried=len(after), agreed=len(after))


def unlock_changes(lab: LabHandle, before: dict[str, str]) -> dict[str, set[str]]:
    """Per node, the v1alpha1 paths Omni's pushed config changed (waits for the push)."""
    deadline = time.monotonic() + 30
    while True:
        after = configs(lab)
        if all("v1alpha1" in config_delta(before[a], after[a]) for a in before):
            break
        assert time.monotonic() < deadline, "Omni pushed no config after unlock"
        time.sleep(0.2)
    out = {}
    for address, config in after.items():
        delta = config_delta(before[address], config)["v1alpha1"]
        old, new = flatten(delta["before"]), flatten(delta["after"])
        out[address] = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
    return out


UNLOCK_DIFFERENCES = {
    "machine.install.disk": (
        "omniport strips it from the patches (Omni main's denylist: Omni manages the install "
        "disk), the v1.9.3 importer keeps it; the lab's Omni renders no install disk, so once "
        "unlocked omniport's nodes lose it and the importer's keep it"
    ),
}


def test_unlock_after_each_tool(driver: Driver, lab_factory: Callable[..., LabHandle]) -> None:
    """Unlocked, Omni pushes its rendered configs: they change the same paths on both twins,
    except UNLOCK_DIFFERENCES."""
    real = lab_factory(*lab_args(), name="omni-unlock-real")
    ours = lab_factory(*lab_args(), name="omni-unlock-ours")
    before_real, before_ours = configs(real), configs(ours)
    code, result, err = driver.run(real, "import", "-backup-output", str(real.dir / "bk.zip"))
    assert code == 0 and result["ok"], (result, err)
    driver.ok(real, "unlock", CLUSTER)
    spec = current_versions_spec(ours)
    omniport("plan", str(spec), "-o", "plan.json", cwd=ours.dir)
    omniport("apply", "plan.json", "--auto-approve", cwd=ours.dir)
    omniport("unlock", CLUSTER, "--plan", "plan.json", "--auto-approve", cwd=ours.dir)
    changed_real = unlock_changes(real, before_real)
    changed_ours = unlock_changes(ours, before_ours)
    found = set()
    for address in before_real:
        found |= changed_real[address] ^ changed_ours[address]
        assert "cluster.controlPlane.endpoint" in changed_real[address] & changed_ours[address]
    agreed = sum(changed_real[a] == changed_ours[a] for a in before_real)
    counts.record("omni-unlock-vs-unlock", "omni", tried=len(before_real), agreed=agreed)
    assert found == set(UNLOCK_DIFFERENCES), found


# ---- the Image Factory as Omni uses it -------------------------------------------------------


def factory_posts(lab: LabHandle) -> list[tuple[str, int]]:
    return [
        (r["path"], r["status"])
        for r in lab.status()["factory"]["requests"]
        if r["method"] == "POST"
    ]


def test_real_dry_run_registers_the_schematic_with_the_lab_factory(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """The importer's dry run POSTs each schematic (its ensure step) and accepts the lab
    factory's answer as the node's ID; omniport's plan only reads, its apply POSTs the same."""
    lab = lab_factory(*lab_args(), name="omni-factory-post")
    code, result, err = driver.run(lab, "import", "--dry-run")
    assert code == 0 and result["ok"], (result, err)
    assert factory_posts(lab) == [("/schematics", 201)]  # once: the importer dedups by ID
    spec = current_versions_spec(lab)
    omniport("plan", str(spec), "-o", str(lab.dir / "plan.json"), cwd=lab.dir)
    assert factory_posts(lab) == [("/schematics", 201)]
    counts.record("omni-factory-post", "omni", tried=1, agreed=1)


def test_real_importer_sends_no_credentials_to_an_authenticated_factory(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """Client v1.9.3 builds its factory client from FeaturesConfig's URL alone, without
    Omni's ImageFactoryAuth: an Enterprise factory answers 401 and validation fails (only
    ``--force`` gets past it). omniport reads the credentials and plans cleanly."""
    lab = lab_factory(*lab_args("--factory-auth"), name="omni-factory-auth")
    code, result, err = driver.run(lab, "import", "--dry-run")
    assert code != 0 and result["validation_error"], (result, err)
    assert "failed to ensure schematic" in result["error"] and "401" in result["error"]
    # one refused POST per node: the importer remembers only schematics it could ensure
    assert factory_posts(lab) == [("/schematics", 401)] * len(lab.nodes)
    spec = current_versions_spec(lab)
    proc = omniport("plan", str(spec), "-o", str(lab.dir / "plan.json"), cwd=lab.dir)
    data = json.loads((lab.dir / "plan.json").read_text())
    assert {f["code"] for f in data["findings"]} <= {"DENYLISTED_VALUES"}, data["findings"]
    assert "Plan:" in proc.stdout
    counts.record("omni-factory-auth", "omni", tried=1, agreed=1)


def test_real_importer_and_omniport_on_an_omni_without_a_factory(
    driver: Driver, lab_factory: Callable[..., LabHandle]
) -> None:
    """Omni's FeaturesConfig names no factory: the importer stops before validating;
    omniport's plan names it as FACTORY_URL_MISSING instead of skipping the check."""
    lab = lab_factory(*lab_args("--omni-factory-url", ""), name="omni-no-factory")
    code, result, err = driver.run(lab, "import", "--dry-run")
    assert code != 0 and "image factory base URL is empty" in result["error"], (result, err)
    spec = current_versions_spec(lab)
    data = yaml.safe_load(spec.read_text())
    data["imageFactory"].pop("url")
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    exe = Path(sys.executable).parent / "omniport"
    proc = subprocess.run(
        [str(exe), "plan", str(spec), "-o", str(lab.dir / "plan.json")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=lab.dir,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = json.loads((lab.dir / "plan.json").read_text())["findings"]
    assert "FACTORY_URL_MISSING" in {f["code"] for f in found}
    counts.record("omni-no-factory", "omni", tried=1, agreed=1)
