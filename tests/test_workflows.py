"""The GitHub workflows parse, run what the project defines, and use the gate as documented."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict[Any, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(doc, dict)
    return doc


def _nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
                ast.unparse(d).startswith("nox.session") for d in node.decorator_list):
            out.add(node.name)
    return out


def _commands(doc: dict[Any, Any]) -> list[str]:
    return [step["run"] for job in doc["jobs"].values() for step in job["steps"]
            if "run" in step]


def _sessions_named(commands: list[str]) -> set[str]:
    named = set()
    for cmd in commands:
        for line in cmd.splitlines():
            words = line.split()
            if words and words[0].endswith("nox") and "-s" in words:
                for w in words[words.index("-s") + 1:]:
                    if w.startswith("-"):
                        break
                    named.add(w)
    return named


def test_ci_runs_lint_and_tests_like_ci_run() -> None:
    doc = _load("ci.yml")
    # YAML 1.1 reads the key `on` as True
    triggers = doc.get("on", doc.get(True))
    assert {"push", "pull_request"} <= set(triggers)
    cmds = _commands(doc)
    assert _sessions_named(cmds) == {"lint", "tests"}
    assert _sessions_named(cmds) <= _nox_sessions()
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "nox -s lint tests" in ci_run and any("nox -s lint tests" in c for c in cmds)


def test_nightly_gates_uploads_and_keeps_the_baseline() -> None:
    doc = _load("nightly.yml")
    triggers = doc.get("on", doc.get(True))
    assert {"schedule", "workflow_dispatch"} <= set(triggers)
    assert _sessions_named(_commands(doc)) == {"nightly"} <= _nox_sessions()
    uses = [step.get("uses", "") for job in doc["jobs"].values() for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    assert any(u.startswith("actions/cache") for u in uses)
    paths = [str(step.get("with", {}).get("path", "")) for job in doc["jobs"].values()
             for step in job["steps"]]
    assert any("results/baselines/nightly" in p for p in paths)


def test_the_nightly_session_uses_commands_that_exist() -> None:
    from harness.cli import build_parser
    from harness.suites import default_suites_dir

    text = (ROOT / "noxfile.py").read_text()
    assert '"--suite", "nightly"' in text and (default_suites_dir() / "nightly.toml").is_file()
    assert "GITHUB_STEP_SUMMARY" in text
    parser = build_parser()
    parser.parse_args(["gate", "a", "b", "-o", "x.md"])
    parser.parse_args(["baseline", "promote", "run", "--name", "nightly"])
