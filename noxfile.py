"""Sessions: bench, tests, lint, benchmarks, report. ``nox -l`` lists them.

Every session installs through constraints.txt, which pins torch to the CPU build.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

CONSTRAINTS = ("-c", "constraints.txt")


def _install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def bench(session: nox.Session) -> None:
    """Run a benchmark sweep: `nox -s bench -- --device snapdragon8gen3 [harness bench options]`."""
    _install(session, "build")
    args = session.posargs or ["--device", "snapdragon8gen3"]
    session.run("harness", "bench", *args)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest options after --, e.g. `-- -m "not slow"`)."""
    _install(session, "build,test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    _install(session, "build,lint")
    session.run("ruff", "check", "harness", "tests", "noxfile.py")
    session.run("mypy")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Benchmarks of the harness itself (timing-loop overhead must stay under 0.25%)."""
    _install(session, "build,test")
    out = session.create_tmp() + "/benchmarks.json"
    session.run("pytest", "tests/benchmarks", "--benchmark-enable", "--benchmark-only",
                f"--benchmark-json={out}", "-p", "no:cacheprovider")
    session.run("python", "tests/benchmarks/check_overhead.py", out, "--max-overhead-pct", "0.25")


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild a run's tables, plots and HTML report from its rows: `nox -s report -- RUN`.

    Nothing is re-run; extra arguments go to `harness report` (e.g. `--format markdown`).
    """
    if not session.posargs:
        session.error("usage: nox -s report -- RUN_DIR [harness report options]")
    session.install(*CONSTRAINTS, "-e", ".")  # reports need no torch: skip the build extra
    session.run("harness", "report", *session.posargs)
