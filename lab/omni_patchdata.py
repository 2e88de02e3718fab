"""A ConfigPatch's YAML as Omni reads it: ``data``, or ``compressed_data`` decoded.

Omni's client compresses every patch of 2048 bytes or more into ``compressed_data``: one zstd
frame made with Omni's dictionary (dictionary ID 1, 64 KiB, in Omni's client module under
``pkg/compression/data``); Omni's server decodes those frames (and dictionary-less ones) and
validates and renders the YAML inside. The dictionary is Omni's file and is not shipped with
omniport: the lab decodes dictionary frames when it is given that file (``lab up
--omni-zstd-dict PATH``), and refuses them, saying so, when it is not.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OMNI_DICTIONARY_ID", "PatchData", "PatchDataError"]

OMNI_DICTIONARY_ID = 1
_MAX_SIZE = 32 << 20  # Omni's gRPC message limit bounds what a frame can expand to


class PatchDataError(ValueError):
    """The patch's compressed data cannot be read."""


class PatchData:
    """Reads ConfigPatch specs, with Omni's zstd dictionary when one was given."""

    def __init__(self, dictionary: bytes | None = None) -> None:
        self.dictionary = dictionary

    def text(self, spec: Any) -> str:
        """The patch's YAML (``data`` when nothing is compressed)."""
        frame = bytes(spec.compressed_data)
        if not frame:
            return str(spec.data)
        try:
            import zstandard
        except ImportError:
            raise PatchDataError(
                "compressed config patches need the zstandard package in the lab"
            ) from None
        try:
            params = zstandard.get_frame_parameters(frame)
        except zstandard.ZstdError as exc:
            raise PatchDataError(f"compressed_data is not a zstd frame: {exc}") from None
        if params.dict_id == 0:
            decoder = zstandard.ZstdDecompressor()
        elif params.dict_id != OMNI_DICTIONARY_ID:
            raise PatchDataError(f"compressed_data uses unknown zstd dictionary {params.dict_id}")
        elif self.dictionary is None:
            raise PatchDataError(
                "compressed_data uses Omni's zstd dictionary 1, which this lab was not given "
                "(lab up --omni-zstd-dict PATH)"
            )
        else:
            decoder = zstandard.ZstdDecompressor(
                dict_data=zstandard.ZstdCompressionDict(self.dictionary)
            )
        try:
            data = decoder.decompress(frame, max_output_size=_MAX_SIZE)
        except zstandard.ZstdError as exc:
            raise PatchDataError(f"compressed_data cannot be decompressed: {exc}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise PatchDataError("compressed_data does not hold UTF-8 text") from None
