"""The lab's Omni reads compressed config patches as Omni does (zstd, dictionary ID 1).

Omni's own dictionary is not shipped with omniport, so these tests train a stand-in dictionary
with ID 1; the interop checks run the lab with Omni's real one and Omni's real client.
"""

from __future__ import annotations

import pytest
import zstandard
from grpclib.const import Status

from omniport.lab.omni import OmniSeed
from omniport.lab.omni_patchdata import PatchData, PatchDataError
from omniport.providers.wire.omni.specs import omni_pb2
from tests.test_lab_omni import Env, Keys, keys, rejected, resource, run

__all__ = ["keys"]  # the module-scoped fixture, shared with test_lab_omni

PATCH = "machine:\n  network:\n    hostname: node-{}\n  sysctls:\n    vm.max_map_count: '{}'\n"
CONFIG_PATCHES = "ConfigPatches.omni.sidero.dev"


@pytest.fixture(scope="module")
def dictionary() -> bytes:
    samples = [PATCH.format(i, i * 7).encode() * 3 for i in range(400)]
    return zstandard.train_dictionary(2048, samples, dict_id=1).as_bytes()


def frame(text: str, dictionary: bytes | None) -> bytes:
    if dictionary is None:
        return zstandard.ZstdCompressor().compress(text.encode())
    dict_data = zstandard.ZstdCompressionDict(dictionary)
    return zstandard.ZstdCompressor(dict_data=dict_data).compress(text.encode())


def spec(text: str = "", compressed: bytes = b"") -> omni_pb2.ConfigPatchSpec:
    return omni_pb2.ConfigPatchSpec(data=text, compressed_data=compressed)


def test_plain_data(dictionary: bytes) -> None:
    assert PatchData().text(spec("a: b\n")) == "a: b\n"
    assert PatchData(dictionary).text(spec("a: b\n")) == "a: b\n"


def test_dictionary_frames(dictionary: bytes) -> None:
    text = PATCH.format(1, 2)
    assert PatchData(dictionary).text(spec(compressed=frame(text, dictionary))) == text
    with pytest.raises(PatchDataError, match="was not given"):
        PatchData().text(spec(compressed=frame(text, dictionary)))


def test_frames_without_dictionary(dictionary: bytes) -> None:
    text = PATCH.format(3, 4)
    assert PatchData().text(spec(compressed=frame(text, None))) == text
    assert PatchData(dictionary).text(spec(compressed=frame(text, None))) == text


def test_bad_frames(dictionary: bytes) -> None:
    with pytest.raises(PatchDataError, match="not a zstd frame"):
        PatchData(dictionary).text(spec(compressed=b"not zstd at all"))
    other = zstandard.train_dictionary(
        2048, [PATCH.format(i, i).encode() * 3 for i in range(400)], dict_id=7
    ).as_bytes()
    with pytest.raises(PatchDataError, match="unknown zstd dictionary 7"):
        PatchData(dictionary).text(spec(compressed=frame("a: b\n", other)))
    truncated = frame(PATCH.format(5, 6) * 20, dictionary)[:-8]
    with pytest.raises(PatchDataError, match="cannot be decompressed"):
        PatchData(dictionary).text(spec(compressed=truncated))


def test_omni_validates_what_the_frame_holds(keys: Keys, dictionary: bytes) -> None:
    """A compressed patch is accepted, a compressed forbidden field refused, like plain ones;
    without the dictionary the lab says which option it needs."""

    async def scenario(env: Env) -> None:
        good = spec(compressed=frame(PATCH.format(7, 8), dictionary))
        created = await env.raw.create(resource(CONFIG_PATCHES, "200-ok", good))
        assert created.metadata.version == "1"
        got = await env.raw.get(CONFIG_PATCHES, "200-ok")
        # served as sent; the informational YAML shows what the frame holds, as Omni's does
        assert omni_pb2.ConfigPatchSpec.FromString(got.spec.proto_spec) == good
        assert "hostname: node-7" in got.spec.yaml_spec
        bad = spec(compressed=frame("cluster:\n  clusterName: other\n", dictionary))
        await rejected(
            env.raw.create(resource(CONFIG_PATCHES, "200-bad", bad)),
            Status.INVALID_ARGUMENT,
            'overriding "v1alpha1: cluster.clusterName" is not allowed',
        )

    run(keys, scenario, seed=OmniSeed(join_token="lab-token", zstd_dictionary=dictionary))

    async def without(env: Env) -> None:
        good = spec(compressed=frame(PATCH.format(7, 8), dictionary))
        await rejected(
            env.raw.create(resource(CONFIG_PATCHES, "200-ok", good)),
            Status.INVALID_ARGUMENT,
            "--omni-zstd-dict",
        )

    run(keys, without)
