"""``omniport show PLAN --format markdown``: a plan as a pull-request comment (issue 15 item 2).

The lab's plan is golden (tests/golden/show-markdown.txt); here: the size limit on plans far
too big for one comment, what is never cut, text from nodes that tries to break out of the
Markdown, and the command's refusals. Plans are built as data and go through the plan file's
own serializer, as ``show`` reads them.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from click.testing import CliRunner

from omniport.planner import planfile
from omniport.planner.cli import cli, run
from omniport.planner.execute.unlock import PREVIEW_CODES
from omniport.planner.plan import Finding, NodePlan, Patch, Severity
from omniport.planner.render_markdown import (
    GITHUB_COMMENT_LIMIT,
    UNLOCK_PREVIEW_CODES,
    render_markdown,
)
from tests.reliability.conftest import rollback_text
from tests.test_planfile import SHA, sample_plan


def balanced(text: str) -> None:
    """Every <details> closed and every code fence closed (outside-fence tags only)."""
    in_fence: str | None = None
    opened = 0
    for line in text.split("\n"):
        fence = re.match(r"^(`{3,})", line)
        if in_fence is None and fence:
            in_fence = fence.group(1)
            continue
        if in_fence is not None:
            if line == in_fence:
                in_fence = None
            continue
        opened += line.count("<details>") - line.count("</details>")
        assert opened >= 0
    assert in_fence is None, "a code block is never closed"
    assert opened == 0, "a <details> is never closed"


def big_plan(nodes: int, patch_lines: int):
    base = sample_plan()
    plans = []
    findings = [Finding("SCHEMATIC_MISSING", Severity.ERROR, "no schematic", "fix", "10.0.0.1")]
    for i in range(nodes):
        address = f"10.0.{i // 250}.{i % 250 + 1}"
        text = "".join(f"machine:\n  key{j}: value-{i}-{j}\n" for j in range(patch_lines))
        plans.append(
            NodePlan(
                address=address,
                hostname=f"node-{i}",
                machine_uuid=f"00000000-0000-4000-8000-{i:012d}",
                role="controlplane" if i < 3 else "worker",
                talos_version="1.11.5",
                schematic_id=None,
                config_sha256=SHA,
                patches=(Patch(f"10-00000000-0000-4000-8000-{i:012d}", SHA, text),),
            )
        )
        findings.append(
            Finding("UNLOCK_PREVIEW", Severity.INFO, "Omni pushes a different config", "", address)
        )
    return dataclasses.replace(base, nodes=tuple(plans), findings=tuple(findings))


def test_a_small_plan_is_shown_whole():
    text = render_markdown(planfile.to_dict(sample_plan()), path="p.json")
    assert "not shown here" not in text
    assert "**Plan: 1 to add, 1 to change, 0 to destroy.**" in text
    assert "⛔ **Apply is blocked** by 1 error finding(s)" in text
    assert "machine:\n  token: (sensitive value)\n" in text
    assert "<code>omniport apply p.json</code>" in text
    balanced(text)


@pytest.mark.parametrize(
    ("nodes", "patch_lines", "cut_note"),
    [
        (3, 3000, "more line(s) not shown here (comment size limit)"),
        (1000, 40, "more patch entries not shown here (comment size limit)"),
    ],
    ids=["long-patches", "many-nodes"],
)
def test_a_big_plan_fits_a_github_comment(nodes: int, patch_lines: int, cut_note: str):
    data = planfile.to_dict(big_plan(nodes, patch_lines))
    text = render_markdown(data, path="p.json")
    assert len(text) <= GITHUB_COMMENT_LIMIT
    assert cut_note in text
    assert "`omniport show p.json` prints the whole plan" in text.replace("&#96;", "`")
    # the summary and the blocking finding are never cut
    assert "**Plan: 1 to add, 1 to change, 0 to destroy.**" in text
    assert "<code>SCHEMATIC&#95;MISSING</code> on <code>10.0.0.1</code>" in text
    balanced(text)


def test_any_limit_is_kept():
    data = planfile.to_dict(big_plan(50, 200))
    for limit in (6_000, 20_000, 65_536):
        text = render_markdown(data, limit=limit)
        assert len(text) <= limit
        balanced(text)


def test_text_from_nodes_cannot_break_out():
    hostile = "x</summary></details><script>alert(1)</script>**bold** | `tick` [l](http://e)"
    patch = Patch("10-a", SHA, "a: 1\n```\n</details>\nb: ````\n")
    node = dataclasses.replace(sample_plan().nodes[0], hostname=hostile, patches=(patch,))
    finding = Finding("ETCD_LEARNER", Severity.WARNING, hostile, hostile, "127.1.0.1")
    plan = dataclasses.replace(sample_plan(), nodes=(node,), findings=(finding,))
    text = render_markdown(planfile.to_dict(plan))
    outside = re.sub(r"(?ms)^(`{3,})\w*\n.*?^\1$", "", text)
    for raw in ("<script>", "</summary></details><script", "**bold**", "`tick`", "[l]("):
        assert raw not in outside, raw
    assert "`````yaml\na: 1\n```\n</details>\nb: ````\n`````" in text
    balanced(text)


def test_the_unlock_preview_is_the_one_unlock_shows():
    assert UNLOCK_PREVIEW_CODES == PREVIEW_CODES


def test_markdown_is_for_plans_and_one_format_at_a_time(tmp_path, capsys):
    path = tmp_path / "p.json"
    planfile.write(sample_plan(), path)
    result = CliRunner().invoke(cli, ["show", "--format", "markdown", str(path)])
    assert result.exit_code == 0 and result.output.startswith("## omniport plan: import cluster")
    capsys.readouterr()
    assert run(["show", "--json", "--format", "markdown", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == "Error: --json and --format markdown ask for two formats; pass only one of them\n"
    rollback = tmp_path / "r.rollback.json"
    rollback.write_text(rollback_text())
    assert run(["show", "--format", "markdown", str(rollback)]) == 1
    assert "is a rollback plan; --format markdown renders plan files" in capsys.readouterr().err
    assert run(["show", "--format", "json", str(path)]) == 0
    assert '"seal": null' in capsys.readouterr().out
