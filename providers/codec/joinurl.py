"""The SideroLink API URL a machine joins Omni with, built as Omni builds it.

Omni parses its advertised machine API URL, adds ``jointoken`` to the query values it already
carries, and re-encodes the whole query (Go's ``url.Values.Encode``: keys sorted, values in
order, every byte outside ``A-Z a-z 0-9 - _ . ~`` percent-escaped, space as ``+``). So a token
holding ``+ / = &`` stays one value, and a URL that already has a query or a path keeps them.
Pasting strings together (``url + "?jointoken=" + token``) breaks on both.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class JoinURLError(ValueError):
    """The advertised URL cannot carry a join token (not an absolute URL)."""


def api_url_problem(machine_api_url: str) -> str | None:
    """Why ``machine_api_url`` cannot be joined with, or None when it can."""
    try:
        join_api_url(machine_api_url, "token")
    except (JoinURLError, ValueError) as exc:  # urlsplit raises ValueError on a bad port/IPv6
        return str(exc)
    return None


def join_api_url(machine_api_url: str, join_token: str) -> str:
    """``machine_api_url`` with ``jointoken=<join_token>`` added to its query."""
    parts = urlsplit(machine_api_url)
    if not parts.scheme or not parts.netloc:
        raise JoinURLError(f"{machine_api_url!r} is not an absolute URL (scheme://host[:port])")
    # Go's url.ParseQuery drops a raw pair that holds ';' (no longer a separator since Go
    # 1.17) or a broken %-escape, and keeps the others.
    kept = "&".join(
        pair for pair in parts.query.split("&") if ";" not in pair and not _BAD_ESCAPE.search(pair)
    )
    values = parse_qsl(kept, keep_blank_values=True)
    values.append(("jointoken", join_token))
    values.sort(key=lambda kv: kv[0])  # stable: equal keys keep their order, as in Go
    return urlunsplit(parts._replace(query=urlencode(values)))
