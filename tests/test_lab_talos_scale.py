"""Scale: 1000 nodes in one lab process, started fast, answering concurrently under latency."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tests.conftest import pid_running

pytestmark = pytest.mark.slow


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def big(lab_factory):
    started = time.monotonic()
    handle = lab_factory("--nodes", "1000", "--controlplanes", "3", name="lab1000")
    handle.up_seconds = time.monotonic() - started
    yield handle
    handle.stop()
    assert not pid_running(handle.pid)


def test_thousand_nodes_start_within_30_seconds(big):
    assert len(big.nodes) == 1000 and len(big.controlplanes) == 3
    assert len(set(big.nodes)) == 1000
    assert big.up_seconds < 30, f"lab up took {big.up_seconds:.1f} s"
    assert rss_mb(big.pid) < 500


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
