"""ApplyConfiguration semantics, Watch and Talos-side faults, through the network only.

This module owns one lab (default versions: Talos v1.11.5 running configs made for v1.9.5) and
changes its nodes and faults; the faults are cleared after every test.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest
import yaml
from grpclib.client import Channel

from omniport.providers.errors import InvalidRequest, ProtocolError, ProviderError, Unreachable
from omniport.providers.talos import ApplyMode
from omniport.providers.talosconfig import load_talosconfig
from omniport.providers.tls import client_context
from omniport.providers.wire.v1alpha1 import state_grpc, state_pb2

MC_TYPE = "MachineConfigs.config.talos.dev"


@pytest.fixture(scope="module")
def tlab(lab_factory):
    return lab_factory("--nodes", "4", "--controlplanes", "1", "--seed", "7", name="apply-lab")


@pytest.fixture(autouse=True)
def _clear_faults(tlab):
    yield
    tlab.fault(kind="clear")


def call(aio, lab, fn, role="admin"):
    async def go():
        async with lab.client(role) as client:
            return await fn(client)

    return aio(go())


def config_of(aio, lab, node: str) -> bytes:
    return call(aio, lab, lambda c: c.machine_config(node))


def persistent_of(aio, lab, node: str) -> bytes:
    from omniport.providers.wire.resource.config import config_pb2

    res = call(aio, lab, lambda c: c.get(node, "config", MC_TYPE, "persistent"))
    return config_pb2.MachineConfigSpec.FromString(res.proto_spec).yaml_marshalled


def edit(config: bytes, fn) -> bytes:
    """The config with ``fn`` applied to its v1alpha1 document, re-emitted as YAML."""
    docs = list(yaml.safe_load_all(config))
    fn(docs[0])
    return yaml.safe_dump_all(docs, sort_keys=False).encode()


def apply(aio, lab, node, data, mode=ApplyMode.AUTO, **kw):
    return call(aio, lab, lambda c: c.apply_configuration(node, data, mode, **kw))


def live_change(doc):
    doc["machine"].setdefault("nodeLabels", {})["lab.test/live"] = str(time.monotonic_ns())


def reboot_change(doc):
    doc["machine"]["env"] = {"TEST_TOKEN": str(time.monotonic_ns())}


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ProviderError:
            pass
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


# ---- modes ----


def test_auto_applies_a_live_change_without_reboot_and_keeps_exact_bytes(aio, tlab):
    node = tlab.workers[0]
    new = b"# edited by a test\n" + edit(config_of(aio, tlab, node), live_change)
    result = apply(aio, tlab, node, new)
    assert result.mode is ApplyMode.NO_REBOOT
    assert result.mode_details == "Applied configuration without a reboot"
    assert config_of(aio, tlab, node) == new
    assert persistent_of(aio, tlab, node) == new
    status = {n["address"]: n for n in tlab.status()["nodes"]}
    assert status[node]["config_sha256"] == hashlib.sha256(new).hexdigest()


def test_auto_with_a_reboot_change_reboots_then_runs_the_new_config(aio, tlab):
    node = tlab.workers[1]
    new = edit(config_of(aio, tlab, node), reboot_change)
    result = apply(aio, tlab, node, new)
    assert result.mode is ApplyMode.REBOOT
    assert result.mode_details.startswith(
        "Applied configuration with a reboot: this config change can't be applied in immediate "
        "mode\ndiff: "
    )
    assert "TEST_TOKEN" in result.mode_details
    wait_for(lambda: config_of(aio, tlab, node) == new)


def test_no_reboot_refuses_a_change_that_needs_a_reboot(aio, tlab):
    node = tlab.workers[2]
    before = config_of(aio, tlab, node)
    with pytest.raises(InvalidRequest, match="can't be applied in immediate mode"):
        apply(aio, tlab, node, edit(before, reboot_change), ApplyMode.NO_REBOOT)
    assert config_of(aio, tlab, node) == before


def test_reboot_mode_persists_and_reboots(aio, tlab):
    node = tlab.workers[2]
    new = edit(config_of(aio, tlab, node), live_change)
    result = apply(aio, tlab, node, new, ApplyMode.REBOOT)
    assert result.mode is ApplyMode.REBOOT
    assert result.mode_details == "Applied configuration with a reboot"
    wait_for(lambda: config_of(aio, tlab, node) == new)


def test_staged_changes_only_the_persistent_config(aio, tlab):
    node = tlab.workers[0]
    before = config_of(aio, tlab, node)
    staged = edit(before, reboot_change)
    result = apply(aio, tlab, node, staged, ApplyMode.STAGED)
    assert result.mode is ApplyMode.STAGED
    assert result.mode_details == "Staged configuration to be applied after the next reboot"
    assert config_of(aio, tlab, node) == before
    assert persistent_of(aio, tlab, node) == staged
    # a later no-reboot apply writes both again
    live = edit(before, live_change)
    apply(aio, tlab, node, live, ApplyMode.NO_REBOOT)
    assert persistent_of(aio, tlab, node) == live == config_of(aio, tlab, node)


def test_try_applies_then_rolls_back_after_its_timeout(aio, tlab):
    node = tlab.controlplanes[0]
    before = config_of(aio, tlab, node)
    trial = edit(before, live_change)
    result = apply(aio, tlab, node, trial, ApplyMode.TRY, try_mode_timeout=0.4)
    assert result.mode is ApplyMode.TRY
    assert result.mode_details == (
        "Applied configuration without a reboot\nThe config is applied in 'try' mode and will "
        "be automatically reverted back in 400ms"
    )
    assert config_of(aio, tlab, node) == trial
    assert persistent_of(aio, tlab, node) == before
    wait_for(lambda: config_of(aio, tlab, node) == before)


def test_try_reverts_to_the_config_that_ran_before_it_not_the_staged_one(aio, tlab):
    """Talos's try timer restores the config active when the try began (a staged config
    stays staged), and a second try restores the first try's config."""
    node = tlab.controlplanes[0]
    before = config_of(aio, tlab, node)
    staged = edit(before, live_change)
    apply(aio, tlab, node, staged, ApplyMode.STAGED)
    first = edit(before, live_change)
    apply(aio, tlab, node, first, ApplyMode.TRY, try_mode_timeout=30)
    second = edit(before, live_change)
    apply(aio, tlab, node, second, ApplyMode.TRY, try_mode_timeout=0.3)
    wait_for(lambda: config_of(aio, tlab, node) == first)
    assert persistent_of(aio, tlab, node) == staged
    apply(aio, tlab, node, before, ApplyMode.NO_REBOOT)
    assert (config_of(aio, tlab, node), persistent_of(aio, tlab, node)) == (before, before)


def test_try_refuses_a_change_that_needs_a_reboot(aio, tlab):
    node = tlab.controlplanes[0]
    with pytest.raises(InvalidRequest, match="can't be applied in immediate mode"):
        apply(aio, tlab, node, edit(config_of(aio, tlab, node), reboot_change), ApplyMode.TRY)


def test_dry_run_changes_nothing_and_shows_the_diff(aio, tlab):
    node = tlab.workers[0]
    before = config_of(aio, tlab, node)
    result = apply(aio, tlab, node, edit(before, reboot_change), dry_run=True)
    assert result.mode is ApplyMode.REBOOT
    assert result.mode_details.startswith(
        "Dry run summary:\nApplied configuration with a reboot (skipped in dry-run).\n"
        "Config diff:\n\n"
    )
    assert "+        TEST_TOKEN" in result.mode_details or "TEST_TOKEN" in result.mode_details
    assert config_of(aio, tlab, node) == before
    same = apply(aio, tlab, node, before, dry_run=True)
    assert same.mode_details.endswith("Config diff:\n\nNo changes.")


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"machine: [unclosed\n", "machine configuration"),
        (
            b"apiVersion: v1alpha1\nkind: FrobConfig\nname: x\n",
            # Talos up to 1.11 does not name the document (1.12 added that).
            r'^"FrobConfig" "v1alpha1": not registered$',
        ),
    ],
    ids=["bad-yaml", "unknown-kind"],
)
def test_invalid_configs_are_refused_with_invalid_argument(aio, tlab, data, text):
    node = tlab.workers[0]
    before = config_of(aio, tlab, node)
    with pytest.raises(InvalidRequest) as err:
        apply(aio, tlab, node, before + b"---\n" + data if b"kind" in data else data)
    assert re.search(text, err.value.message)
    assert config_of(aio, tlab, node) == before


@pytest.mark.parametrize(
    ("extra", "unknown"),
    [
        (None, b"bogus: 1\n"),
        (b"apiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fd00::1]:8090'\n", b"x: 1\n"),
        (
            b"apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: https://127.0.0.1:8099\n",
            b"insecure:\n    - a\n",
        ),
    ],
    ids=["v1alpha1", "EventSinkConfig", "SideroLinkConfig"],
)
def test_unknown_keys_are_refused_with_talos_text(aio, tlab, extra, unknown):
    """Talos decodes configs strictly: a key its document type lacks is refused, and the
    error quotes the unknown keys as YAML (the Go client reads such a config as an error)."""
    node = tlab.workers[0]
    before = config_of(aio, tlab, node)
    if extra is None:
        data = edit(before, lambda doc: doc.update(yaml.safe_load(unknown)))
    else:
        data = before + b"---\n" + extra + unknown
    with pytest.raises(InvalidRequest) as err:
        apply(aio, tlab, node, data)
    assert err.value.message.endswith("unknown keys found during decoding:\n" + unknown.decode())
    assert config_of(aio, tlab, node) == before


def test_documents_newer_than_the_running_talos_are_refused(aio, tlab):
    node = tlab.workers[0]
    before = config_of(aio, tlab, node)
    newer = before + b"---\napiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n    servers: [a]\n"
    with pytest.raises(InvalidRequest, match='"TimeSyncConfig" "v1alpha1": not registered'):
        apply(aio, tlab, node, newer)


def test_join_documents_apply_without_reboot(aio, tlab):
    """The importer's change: SideroLink, event sink and kmsg documents, mode AUTO."""
    node = tlab.workers[1]
    before = config_of(aio, tlab, node)
    joined = before + (
        b"---\napiVersion: v1alpha1\nkind: SideroLinkConfig\n"
        b"apiUrl: https://127.0.0.1:8099?jointoken=abc\n"
        b"---\napiVersion: v1alpha1\nkind: EventSinkConfig\n"
        b"endpoint: '[fdae:41e4:649b:9303::1]:8090'\n"
        b"---\napiVersion: v1alpha1\nkind: KmsgLogConfig\nname: omni-kmsg\n"
        b"url: tcp://[fdae:41e4:649b:9303::1]:8092\n"
    )
    result = apply(aio, tlab, node, joined)
    assert result.mode is ApplyMode.NO_REBOOT
    assert config_of(aio, tlab, node) == joined
    apply(aio, tlab, node, before)
    assert config_of(aio, tlab, node) == before


def test_watch_reports_config_updates(aio, tlab):
    node = tlab.workers[2]
    ctx = load_talosconfig(tlab.talosconfig)
    endpoint = ctx.endpoints[0]
    new = edit(config_of(aio, tlab, node), live_change)

    async def go():
        channel = Channel(
            endpoint.host, endpoint.port, ssl=client_context(ctx.ca, ctx.crt, ctx.key)
        )
        try:
            stub = state_grpc.StateStub(channel)
            request = state_pb2.WatchRequest(namespace="config", type=MC_TYPE, id="v1alpha1")
            async with stub.Watch.open(metadata=[("node", node)]) as stream:
                await stream.send_message(request, end=True)
                ready = await stream.recv_message()
                initial = await stream.recv_message()
                async with tlab.client() as client:
                    await client.apply_configuration(node, new, ApplyMode.NO_REBOOT)
                update = await stream.recv_message()
                await stream.cancel()
                return ready, initial, update
        finally:
            channel.close()

    ready, initial, update = aio(go())
    assert not ready.event
    assert [e.event_type for e in initial.event] == [state_pb2.CREATED]
    [event] = update.event
    assert event.event_type == state_pb2.UPDATED
    assert int(event.resource.metadata.version) > int(event.old.metadata.version)
    assert event.resource.spec.yaml_spec == new.decode()


# ---- faults ----


def test_unreachable_node_fails_only_its_own_calls(aio, tlab):
    down = tlab.workers[0]
    tlab.fault(kind="unreachable", node=down)
    with pytest.raises(Unreachable, match=down):
        call(aio, tlab, lambda c: c.version(down))
    assert call(aio, tlab, lambda c: c.version(tlab.workers[1])).tag == "v1.11.5"
    tlab.fault(kind="unreachable", node=down, clear=True)
    assert call(aio, tlab, lambda c: c.version(down)).tag == "v1.11.5"


def test_unreachable_node_fails_the_health_check(aio, tlab):
    tlab.fault(kind="unreachable", node=tlab.workers[1])

    async def check(c):
        return [
            line
            async for line in c.health_check(
                tlab.controlplanes[0],
                control_plane_nodes=tlab.controlplanes,
                worker_nodes=tlab.workers,
                wait_timeout=0.3,
            )
        ]

    with pytest.raises(ProviderError, match="deadline exceeded"):
        call(aio, tlab, check)


def test_cancelled_health_check_ends_with_cancelled(aio, tlab):
    tlab.fault(kind="health", problem="cancelled")

    async def check(c):
        return [
            line
            async for line in c.health_check(
                tlab.controlplanes[0],
                control_plane_nodes=tlab.controlplanes,
                worker_nodes=tlab.workers,
                wait_timeout=5,
            )
        ]

    with pytest.raises(ProviderError, match="context canceled") as info:
        call(aio, tlab, check)
    assert info.value.code == 1  # gRPC CANCELLED


def test_latency_is_added_per_call_without_serializing(aio, tlab):
    import asyncio

    tlab.fault(kind="latency", ms=300)

    async def many(c):
        start = time.monotonic()
        await asyncio.gather(*(c.version(n) for n in tlab.nodes * 3))
        return time.monotonic() - start

    elapsed = call(aio, tlab, many)
    assert 0.3 <= elapsed < 1.2  # 12 calls of 300 ms each, concurrently


def test_latency_for_one_node(aio, tlab):
    slow = tlab.workers[2]
    tlab.fault(kind="latency", ms=400, node=slow)

    async def timed(c, node):
        start = time.monotonic()
        await c.version(node)
        return time.monotonic() - start

    assert call(aio, tlab, lambda c: timed(c, slow)) >= 0.4
    assert call(aio, tlab, lambda c: timed(c, tlab.workers[0])) < 0.3


def test_apply_failure_always(aio, tlab):
    node = tlab.workers[0]
    before = config_of(aio, tlab, node)
    tlab.fault(kind="apply-failure", node=node)
    with pytest.raises(ProtocolError, match="injected failure: ApplyConfiguration"):
        apply(aio, tlab, node, before)
    apply(aio, tlab, tlab.workers[1], config_of(aio, tlab, tlab.workers[1]))  # others unaffected


def test_apply_failure_after_k_calls(aio, tlab):
    node = tlab.workers[0]
    before = config_of(aio, tlab, node)
    tlab.fault(kind="apply-failure", after=2)
    apply(aio, tlab, node, before)
    apply(aio, tlab, node, before)
    with pytest.raises(ProtocolError, match="injected failure"):
        apply(aio, tlab, node, before)


def test_fault_state_is_reported_and_cleared(tlab):
    tlab.fault(kind="never-connect")
    tlab.fault(kind="factory-down")
    active = tlab.fault(kind="omni-failure", method="Create", type="Clusters.omni.sidero.dev")
    assert active["never_connect"] and active["factory_down"]
    assert active["omni_failures"] == [
        {"method": "Create", "resource_type": "Clusters.omni.sidero.dev", "code": 14, "times": None}
    ]
    cleared = tlab.fault(kind="clear")
    assert not cleared["never_connect"] and not cleared["omni_failures"]
