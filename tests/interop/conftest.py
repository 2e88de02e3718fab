"""Interop fixtures: the Go programs are built once per session.

Without Go the interop checks skip on a developer machine, but fail when ``CI=true``: CI must
prove omniport against Talos's and Omni's own code, never silently skip it.
"""

from __future__ import annotations

import pytest

from tests.interop import oracles


@pytest.fixture(scope="session")
def interop_built() -> None:
    try:
        oracles.build()
    except oracles.GoMissing as err:
        if oracles.in_ci():
            pytest.fail(f"interop checks need Go in CI: {err}")
        pytest.skip(f"interop checks need Go: {err}")


@pytest.fixture(
    scope="session", params=sorted(oracles.MACHINERY, key=lambda m: tuple(map(int, m.split("."))))
)
def oracle(request: pytest.FixtureRequest, interop_built: None) -> oracles.Oracle:
    """Each Talos minor's oracle in turn."""
    return oracles.Oracle(request.param)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.interop import counts

    table = counts.lines()
    if table:
        terminalreporter.section("interop cases (tried / agreed)")
        for line in table:
            terminalreporter.write_line(line)
