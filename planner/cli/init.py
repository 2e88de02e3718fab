"""``omniport init``: write a commented import spec from a live cluster (``planner.init``)."""

from __future__ import annotations

from pathlib import Path

import click

from omniport.planner.cli.context import CliContext, pass_console


def _endpoints(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """``--endpoints a,b --endpoints c`` as talosctl takes them: repeated or comma-separated."""
    return tuple(e.strip() for v in value for e in v.split(",") if e.strip())


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False), default="import.yaml")
@click.option(
    "--talosconfig",
    type=click.Path(dir_okay=False),
    help="The talosconfig (default: $TALOSCONFIG, then ~/.talos/config).",
)
@click.option("--context", help="The talosconfig context (default: its selected one).")
@click.option(
    "--endpoints",
    multiple=True,
    callback=_endpoints,
    help="apid endpoints replacing the context's (repeat or comma-separate).",
)
@click.option(
    "--omniconfig",
    type=click.Path(dir_okay=False),
    help="The omniconfig giving Omni's URL (default: $OMNICONFIG, then omnictl's locations).",
)
@click.option("--omni-context", help="The omniconfig context (default: its selected one).")
@click.option("--omni-url", help="Omni's URL (default: $OMNI_ENDPOINT, then the omniconfig's).")
@click.option(
    "--omni-ca-file",
    type=click.Path(dir_okay=False, exists=True),
    help="PEM bundle signing Omni's certificate, when not in the system trust store.",
)
@pass_console
def init(
    console: CliContext,
    spec: str,
    talosconfig: str | None,
    context: str | None,
    endpoints: tuple[str, ...],
    omniconfig: str | None,
    omni_context: str | None,
    omni_url: str | None,
    omni_ca_file: str | None,
) -> None:
    """Write a commented import spec (default import.yaml) from a live cluster.

    Reads the nodes from Talos discovery (Members) through the talosconfig's endpoints, the
    Talos and Kubernetes versions from the first control plane, and Omni's URL from
    --omni-url, $OMNI_ENDPOINT or the omniconfig. Writes no secret (the service account key
    stays in $OMNI_SERVICE_ACCOUNT_KEY) and never overwrites a file.
    """
    # imported here: start-up time
    import asyncio

    from omniport.planner import init as initspec
    from omniport.planner.spec import SpecError, parse_spec

    request = initspec.InitRequest(
        path=Path(spec),
        talosconfig=Path(talosconfig) if talosconfig else None,
        context=context,
        endpoints=endpoints,
        omniconfig=Path(omniconfig) if omniconfig else None,
        omni_context=omni_context,
        omni_url=omni_url,
        omni_ca_file=Path(omni_ca_file) if omni_ca_file else None,
    )
    if not console.as_json:
        console.err("Reading the cluster's discovery members and versions…")
    found = asyncio.run(initspec.inspect(request))
    text = initspec.render_spec(found, request)
    # what validate checks, before the file exists: a spec init writes always passes it
    try:
        parse_spec(text, file=spec, base=request.path.resolve().parent, path=request.path)
    except SpecError as err:
        problems = "; ".join(p.message for p in err.problems)
        raise initspec.InitError(
            f"the spec init would write does not validate, so nothing was written: {problems}",
            "check the values given on the command line and in the environment",
        ) from None
    initspec.write_spec(text, request.path)
    for line in initspec.describe(found):
        console.err(f"  {line}")
    console.echo(f"Wrote {spec}. Review it, then: omniport plan {spec}")
