"""Sealed JSON files: one canonical text form, a self-checksum, and atomic private writes.

Plan files and rollback plans are both reviewed by people and trusted by apply/rollback, so
both are written deterministically and carry the sha256 of their own canonical body.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any


def canonical(data: Any) -> str:
    """The one text form of ``data``: what is written, hashed and compared."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def checksum(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def json_problem(err: ValueError | RecursionError) -> str:
    """Why ``json.loads`` refused a text, in words (not Python's advice on its own limits)."""
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at line {err.lineno} column {err.colno}"
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return "a number has too many digits"


def shown(value: Any, limit: int = 60) -> str:
    """A value read from a file, fit for a one-line message: plain when it is a plain word,
    else its repr (no raw newline or carriage return), cut in the middle when long."""
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    text = value if isinstance(value, str) and _PLAIN_TEXT.fullmatch(value) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 16]}…{text[-12:]}"


def schema_place(path: Any) -> str:
    """Where in a file a schema error is, as ``a/0/b``; ``(top level)`` for the root."""
    return "/".join(shown(part, 40) for part in path) or "(top level)"


_PLAIN = re.compile(r"[\w.+-]{1,40}")
_PLAIN_TEXT = re.compile(r"[ -~]*")  # printable ASCII: a schema message already quotes values


def write_private(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    """Write ``text`` atomically (temp file, fsync, rename) with ``mode``; the dir is fsynced.

    The file exists whole or not at all, and never with a wider mode than asked for.
    """
    path = Path(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    directory = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def schema_problem(data: Any, schema_name: str) -> str | None:
    """Where and why ``data`` breaks ``schemas/<schema_name>.schema.json``, or None if it fits."""
    # imported here: start-up time (jsonschema is slow to import; only a file that fails
    # its checksum or shape needs it)
    import jsonschema

    from omniport import schemas

    validator = jsonschema.Draft202012Validator(schemas.load(schema_name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return None
    return f"at {schema_place(error.absolute_path)}: {shown(error.message, 200)}"
