"""Scale: 1000 nodes in one lab process, answering concurrently under latency."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.conftest import pid_running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big(lab_factory):
    handle = lab_factory("--nodes", "1000", "--controlplanes", "3", name="lab1000")
    yield handle
    handle.stop()
    assert not pid_running(handle.pid)


def test_thousand_nodes_start_with_distinct_addresses(big):
    # How long this takes and how much memory the lab holds are figures, printed by
    # bench/apply_scale.py (lab_up_s, lab_peak_rss_mib), not timed assertions here.
    assert len(big.nodes) == 1000 and len(big.controlplanes) == 3
    assert len(set(big.nodes)) == 1000
    assert pid_running(big.pid)


def test_every_node_answers_with_its_own_config(aio, big):
    async def read(c):
        return await c.map_nodes(big.nodes, c.machine_config, parallelism=100)

    async def go():
        async with big.client() as client:
            return await read(client)

    configs = aio(go())
    assert not [n for n, v in configs.items() if isinstance(v, Exception)]
    status = {n["address"]: n["config_sha256"] for n in big.status()["nodes"]}
    assert all(hashlib.sha256(configs[n]).hexdigest() == status[n] for n in big.nodes)


def test_latency_is_honoured_per_call_without_serializing(aio, big):
    big.fault(kind="latency", ms=300)
    try:

        async def go():
            async with big.client() as client:
                start = time.monotonic()
                replies = await client.map_nodes(big.nodes, client.version, parallelism=1000)
                return time.monotonic() - start, replies

        elapsed, replies = aio(go())
    finally:
        big.fault(kind="clear")
    assert all(not isinstance(v, Exception) for v in replies.values())
    # 1000 calls x 300 ms would take 300 s one after another
    assert 0.3 <= elapsed < 15, f"1000 calls with 300 ms latency took {elapsed:.1f} s"
