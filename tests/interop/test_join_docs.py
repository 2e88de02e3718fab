"""omniport's join documents equal the ones Omni's own siderolink package renders.

Tokens are plain, as Omni's DefaultJoinToken is: a token starting ``v1:``/``v2:`` is an encoded
token to Omni (base64 JSON), which a default join token never is.

Omni's importer connects a node by merging ``JoinOptions.RenderJoinConfig()`` into its config;
``omni join-docs`` (tests/interop/omni/join.go) calls that code for given SideroLink settings.
The comparison is of parsed YAML documents: the same kinds, in the same order, with the same
values (no normalization).
"""

from __future__ import annotations

import json
import random
import string
import subprocess

import yaml

from omniport.planner.join import JoinOptions, join_documents
from tests.interop import counts, oracles
from tests.test_join_url import CASES

TOKEN_ALPHABET = string.ascii_letters + string.digits + "+/=&-_.~%:;?# "


def _omni(url: str, token: str, events: int, logs: int) -> dict:
    out = subprocess.run(
        [
            str(oracles.BIN / "omni"),
            "join-docs",
            "-url",
            url,
            "-token",
            token,
            "-events-port",
            str(events),
            "-logs-port",
            str(logs),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def _cases() -> list[tuple[str, str, int, int]]:
    rng = random.Random(1301)
    urls = [url for url, _, _ in CASES]
    out = [(url, token, 8090, 8092) for url, token, _ in CASES]
    for _ in range(40):
        token = "".join(rng.choice(TOKEN_ALPHABET) for _ in range(rng.randint(1, 48)))
        out.append((rng.choice(urls), token, rng.randint(1, 65535), rng.randint(1, 65535)))
    return out


def test_join_documents_match_omnis_siderolink_package(interop_built):
    cases = _cases()
    agreed = 0
    for url, token, events, logs in cases:
        theirs = _omni(url, token, events, logs)
        assert "error" not in theirs, (url, token, theirs)
        ours = join_documents(JoinOptions(url, token, events, logs))
        assert ours == list(yaml.safe_load_all(theirs["config"])), (url, token)
        agreed += 1
    counts.record("join-documents", "omni", tried=len(cases), agreed=agreed)
