"""The ``adb`` backend: each case measured on a real phone by ``onnxruntime_perf_test`` (or
TFLite's ``benchmark_model`` for ``.tflite`` artifacts, see :mod:`.benchmark_model`).

Per case: connect (once; again after the phone was lost), push the artifact once to
``/data/local/tmp/edge-harness/<key>/`` (skipped when the same bytes are there) and the runner
once, wait for the SoC to cool (bounded), start the telemetry loop on the phone
(:mod:`.telemetry`: one streaming shell read on a thread), run the runner with every argument
quoted, stop the loop, parse the output into a ``forward`` phase whose ``summary`` holds the
runner's statistics, and the samples into ``measured.telemetry`` and the row's ``trace``.
Quality and fidelity are the host's business (the runner times generated inputs): the row
says so in ``measured.extra.notes``. Any failure is this case's ``error`` or ``timeout`` row.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends.adb.benchmark_model import (
    BENCHMARK_MODEL,
    RUNNER_FORMATS,
    benchmark_model_args,
    parse_benchmark_model,
    runner_kind,
)
from harness.backends.adb.device import REMOTE_ROOT, AdbError, Phone, sha256_file
from harness.backends.adb.perf_test import (
    PerfTestOutputError,
    parse_perf_test,
    perf_test_args,
)
from harness.backends.adb.telemetry import (
    LOOP,
    SIMPLE_LOOP,
    SPOOLED,
    TELEMETRY_FORMS,
    PollingStream,
    SampleLayout,
    Spool,
    StreamParser,
    TelemetryStream,
    sample_command,
    simple_loop_script,
    soc_temp,
    summarize,
    telemetry_script,
)
from harness.backends.base import (
    BackendContext,
    BackendOptions,
    Capabilities,
    CaseJob,
    measurement_for,
    now_iso,
)
from harness.core.measurement import (
    FORWARD,
    ColdStart,
    DeviceTelemetry,
    Measured,
    Measurement,
    Phase,
)

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

QUALITY_NOTE = ("quality and fidelity are not measured on the phone (the runner times "
                "generated inputs): see the host or emulated row of this cell")
DEFAULT_TIMEOUT_S = 600.0
COOLDOWN_POLL_S = 2.0      # between thermal reads while waiting for the SoC to cool
TELEMETRY_PERIOD_S = 0.2   # between samples of the loop on the phone
TELEMETRY_START_S = 5.0    # wait at most this for the first sample of a form
TELEMETRY_START_SKIPS = 3  # lines that are not samples, and none that is: the form is not run
TELEMETRY_MARGIN_S = 60.0  # the loop's own bound: the case's timeout plus this
# a phone found gone is looked for again by each later case, but this briefly: a sweep whose
# phone left is recorded in seconds a case, not a full --adb connect timeout each
LOST_CONNECT_S = 3.0


class AdbBackend:
    """A real phone over adb, one case at a time."""

    name = "adb"
    capabilities = Capabilities(needs_device=True, predicts=False, concurrency=1,
                                measures_on="device")

    def __init__(self) -> None:
        self.profile: DeviceProfile | None = None
        self.options = BackendOptions()
        self.phone: Phone | None = None
        self.facts: dict[str, Any] = {}
        self.runner_remote: str | None = None
        self._sha: dict[Path, str] = {}
        self.idle_c: float | None = None   # the SoC at the first connect: what "cool" means
        self.lost = False    # the phone was found gone and has not answered since
        # the telemetry form that last gave samples (see _start_telemetry): later cases start
        # there, not with the forms this phone's shell was seen not to run
        self.telemetry_form = TELEMETRY_FORMS[0]
        self._layout: SampleLayout | None = None    # the simple forms' files, per connection

    def open(self, profile: DeviceProfile | None, context: BackendContext) -> None:
        # connecting waits for the first case: a phone that is not there gives error rows
        self.profile = profile
        self.options = context.options

    def close(self) -> None:
        """End of the sweep: the telemetry loops' temporary files (flags, spools) are removed
        from the phone if it still answers (a loop left behind by a failed case or an
        abandoned form ends when its flag is gone); pushed artifacts and the runner stay, so
        the next run does not push them again."""
        if self.phone is not None and not self.lost:
            with contextlib.suppress(Exception):
                self.phone.sh(f"rm -f {REMOTE_ROOT}/telemetry-*", timeout_s=5.0)
        self._drop()

    def _drop(self) -> None:
        if self.phone is not None:
            self.phone.close()
        self.phone, self.runner_remote, self._layout = None, None, None

    # ------------------------------------------------------------------ the phone
    def _connect(self) -> Phone:
        if self.phone is not None:
            return self.phone
        o = self.options
        if (o.adb is None and o.serial is None) or o.runner is None:
            raise AdbError("failed", "the adb backend needs --adb HOST:PORT or --serial "
                                     "SERIAL, and --runner PATH")
        phone = Phone.connect(adb=o.adb, serial=o.serial,
                              timeout_s=min(o.connect_timeout_s, LOST_CONNECT_S) if self.lost
                              else o.connect_timeout_s)
        self.lost = False
        try:
            soc = phone.getprop("ro.soc.model")
            p = self.profile
            if soc and p is not None and soc.upper() != p.adb_soc_model.upper():
                raise AdbError("failed", f"the phone at {phone.where} has SoC {soc}, but "
                               f"profile {p.name!r} is {p.adb_soc_model}: give the "
                               f"--device whose adb_soc_model is {soc}")
            self.facts = {"soc_model": soc or None,
                          "product_model": phone.getprop("ro.product.model") or None,
                          "serialno": phone.getprop("ro.serialno") or None}
            phone.list_zones()
            phone.list_policies()
            if self.idle_c is None:   # a reconnect (phone lost mid-sweep) keeps the first
                self.idle_c = soc_temp(phone.thermal())
            runner = Path(o.runner)
            self._sha.setdefault(runner, sha256_file(runner))
            remote = f"{REMOTE_ROOT}/bin/{runner.name}"
            phone.push_if_changed(runner, remote, mode=0o755, sha256=self._sha[runner])
            phone.check(f"chmod 755 {shlex.quote(remote)}")
        except BaseException:
            phone.close()
            raise
        self.phone, self.runner_remote = phone, remote
        self.facts["runner"] = runner.name
        self.facts["runner_sha256"] = self._sha[runner]
        return phone

    def _answers(self) -> bool:
        """Whether the phone answers a new connection now (briefly)."""
        o = self.options
        try:
            probe = Phone.connect(adb=o.adb, serial=o.serial,
                                  timeout_s=min(o.connect_timeout_s, 5.0))
        except AdbError:
            return False
        try:
            probe.sh("true", timeout_s=5.0)
            return True
        except AdbError:
            return False
        finally:
            probe.close()

    # ------------------------------------------------------------------ one case
    def measure(self, job: CaseJob) -> Measurement:
        started, started_at = time.monotonic(), now_iso()
        job = replace(job, provenance=replace(job.provenance,
                                              backend_version=_adb_shell_version()))

        def finish(status: str, reason: str = "", **figures: Any) -> Measurement:
            return measurement_for(job, backend=self.name, status=status, reason=reason,
                                   started=started, started_at=started_at, **figures)

        try:
            if job.failure is not None:
                return finish(*job.failure)
            if job.measure is None:
                return finish("error", "no measurement task (the artifact was not built)")
            kind = self._runner_kind()
            wants = RUNNER_FORMATS[kind]
            if job.measure.artifact.format != wants:
                return finish("unsupported", f"the runner {kind} runs {wants} artifacts, "
                                             f"this case's is "
                                             f"{job.measure.artifact.format!r}")
            return self._measure(job, finish)
        except AdbError as exc:
            if exc.kind in ("gone", "timeout"):
                self._drop()  # the next case connects again
            if exc.kind == "timeout" and not self._answers():
                # over TCP a vanished phone looks like silence: tell the two apart
                exc = AdbError("gone", f"{exc}; the phone no longer answers (unplugged, "
                                       f"asleep or rebooted?)")
            if exc.kind in ("gone", "no-device"):
                self.lost = True
            return finish("timeout" if exc.kind == "timeout" else "error", str(exc))
        except Exception as exc:  # last line of defence: one bad case never stops the sweep
            self._drop()
            return finish("error", f"{type(exc).__name__}: {exc}")

    def _measure(self, job: CaseJob, finish: Any) -> Measurement:
        task = job.measure
        assert task is not None
        phone = self._connect()
        assert self.runner_remote is not None
        local = task.artifact.path(task.cache_dir)
        if local not in self._sha:
            self._sha[local] = sha256_file(local)
        remote = f"{REMOTE_ROOT}/{task.artifact.key}/{task.artifact.filename}"
        pushed = phone.push_if_changed(local, remote, sha256=self._sha[local])
        kind = self._runner_kind()
        args = benchmark_model_args if kind == BENCHMARK_MODEL else perf_test_args
        argv = [self.runner_remote, *args(remote, iterations=task.iterations,
                                          threads=task.threads)]
        command = " ".join(shlex.quote(a) for a in argv)
        timeout = task.timeout_s if task.timeout_s > 0 else DEFAULT_TIMEOUT_S
        before, cooldown = self._cool_down(phone)
        battery = phone.battery()
        stream: TelemetryStream | None = None
        spool: Spool | None = None
        mode = self._telemetry_mode()
        if mode == "stream":
            stream, tele_note = self._start_telemetry(phone, timeout)
        elif mode == "file":
            spool = Spool(telemetry_script(
                phone.zones, phone.policies, period_s=TELEMETRY_PERIOD_S,
                flag=(flag := f"{REMOTE_ROOT}/telemetry-{secrets.token_hex(6)}.on"),
                max_samples=math.ceil((timeout + TELEMETRY_MARGIN_S) / TELEMETRY_PERIOD_S)),
                flag=flag, log=flag[:-3] + ".log", period_s=TELEMETRY_PERIOD_S)
            tele_note = ""
        else:
            tele_note = "telemetry off (--telemetry off)"
        t0 = time.monotonic()
        ran, on_phone, then_out = False, None, ""
        try:
            # the phone's uptime around the run, read in the same shell: which samples were
            # taken while it ran, however late the connection let the command through
            # the loop's flag goes with the run, in the same shell: the loop then takes one
            # more sample and ends by itself (no kill to send on a shared USB connection)
            then = spool.then if spool is not None else (
                None if stream is None or stream.flag is None
                else f"rm -f {shlex.quote(stream.flag)}")
            out, rc, on_phone, then_out = phone.sh_timed(
                command, timeout_s=timeout, then=then,
                before=None if spool is None else spool.before)
            ran = True
        finally:
            wall = time.monotonic() - t0
            # after a timeout or a lost phone the main connection cannot carry the kill:
            # the stream is cut instead (the loop then dies writing to its closed stream)
            tele_note = self._stop_telemetry(phone if ran else None, stream, tele_note)
            if spool is not None and not ran:
                self._forget_spool(phone, spool)
        parser: StreamParser | None = stream.parser if stream is not None else None
        if spool is not None:
            parser = spool.parse(then_out)
            if not parser.samples:
                tele_note = ("telemetry sampled to a file on the phone gave no sample (its "
                             "shell may lack what the loop needs: try --telemetry stream "
                             "over --adb)")
        notes = [QUALITY_NOTE]
        try:
            after = phone.thermal()
        except AdbError as exc:
            # the run's output is in: a phone lost now costs this reading, not the row (the
            # next case connects again)
            after = {}
            notes.append(f"the phone was lost after the run, before its temperatures "
                         f"could be read ({exc})")
            self._drop()
        form = SPOOLED if spool is not None else (None if stream is None else stream.form)
        extra = {**self.facts, "command": command, "artifact_pushed": pushed,
                 "telemetry_form": form if parser is not None and parser.samples else None,
                 "run_s": round(wall, 3), "thermal_before_c": before,
                 "thermal_after_c": after, "battery_before": battery, **cooldown,
                 "notes": notes}

        def telemetry(mean_ms: float | None) -> tuple[DeviceTelemetry | None, Any]:
            if parser is None or (spool is not None and not parser.samples):
                return DeviceTelemetry(samples=0, period_s=TELEMETRY_PERIOD_S,
                                       note=tele_note), None
            return summarize(parser, period_s=TELEMETRY_PERIOD_S,
                             mean_inference_ms=mean_ms, note=tele_note,
                             run_window=(t0, t0 + wall), run_uptime=on_phone)

        if rc != 0:
            tail = " | ".join(out.strip().splitlines()[-3:])
            signal = f" (killed by signal {rc - 128})" if rc > 128 else ""
            tele, trace = telemetry(None)
            return finish("error", f"the runner exited with status {rc}{signal}: "
                                   f"{tail[-300:]}",
                          measured=Measured(where=phone.where, extra=extra, telemetry=tele),
                          trace=trace)
        try:
            parsed = (parse_benchmark_model if kind == BENCHMARK_MODEL
                      else parse_perf_test)(out)
        except PerfTestOutputError as exc:
            tele, trace = telemetry(None)
            return finish("error", f"{exc}: {out.strip()[-300:]!r}",
                          measured=Measured(where=phone.where, extra=extra, telemetry=tele),
                          trace=trace)
        cold = None
        if parsed.load_ns is not None and parsed.first_inference_ns is not None:
            cold = ColdStart(parsed.load_ns, parsed.first_inference_ns)
        tele, trace = telemetry(parsed.summary["mean_ns"] / 1e6)
        measured = Measured(
            where=phone.where, phases=(Phase(FORWARD, (), summary=parsed.summary),),
            cold_start=cold,
            peak_memory_mb=None if parsed.peak_memory_bytes is None
            else round(parsed.peak_memory_bytes / 2**20, 3),
            runtime="tflite" if kind == BENCHMARK_MODEL else "onnxruntime",
            providers=() if kind == BENCHMARK_MODEL else ("CPUExecutionProvider",),
            threads=task.threads or None, warmup_runs=1, extra=extra, telemetry=tele)
        result: Measurement = finish("ok", measured=measured, trace=trace)
        return result

    def _runner_kind(self) -> str:
        o = self.options
        return runner_kind(Path(o.runner or ""), o.runner_kind)

    # ------------------------------------------------------------------ telemetry
    def _telemetry_mode(self) -> str:
        """stream, file or off (see BackendOptions.telemetry): auto streams over TCP and
        spools to a file over USB, whose single connection the runner's command holds."""
        mode = self.options.telemetry
        if mode == "auto":
            return "stream" if self.options.adb is not None else "file"
        return mode

    @staticmethod
    def _forget_spool(phone: Phone, spool: Spool) -> None:
        """After a run that did not finish: end the loop and remove its files, if the phone
        still answers (else the loop ends at its own bound, the files stay)."""
        with contextlib.suppress(Exception):
            phone.sh(spool.cleanup, timeout_s=5.0)

    def _start_telemetry(self, phone: Phone, timeout_s: float
                         ) -> tuple[TelemetryStream | None, str]:
        """The sampling stream, started and its first sample in: the first form of
        TELEMETRY_FORMS, from the one that last worked on this phone, that yields a sample
        (each given at most TELEMETRY_START_S; one whose stream ends, or that prints only
        lines that are not samples, is left at once); or None. The note names a fallback
        form and why the forms before it gave nothing. A failure here never fails the case."""
        failed: list[str] = []
        for form in TELEMETRY_FORMS[TELEMETRY_FORMS.index(self.telemetry_form):]:
            try:
                stream = self._open_stream(phone, form, timeout_s)
            except AdbError as exc:
                return None, "; ".join([*failed, f"telemetry not started: {exc}"])
            why = _first_sample(stream)
            if why is None:
                self.telemetry_form = form
                return stream, "" if form == LOOP else (
                    f"telemetry sampled by the {form} form"
                    + (f" ({'; '.join(failed)})" if failed else ""))
            failed.append(f"the {form} form gave no sample ({why})")
            stream.stop(None)
        return None, "telemetry did not start: " + "; ".join(failed)

    def _open_stream(self, phone: Phone, form: str, timeout_s: float) -> TelemetryStream:
        """The stream of ``form`` (see :mod:`.telemetry`), on a connection of its own."""
        period = TELEMETRY_PERIOD_S
        if form != LOOP and self._layout is None:
            self._layout = SampleLayout.of(phone.zones, phone.policies, phone.read_files)
            if not self._layout.paths:
                self._layout = None
                raise AdbError("failed", "no telemetry file could be read on the phone")
        device, owns = self._telemetry_device(phone)
        # on its own connection a silence of 20 periods means the phone is gone; sharing a
        # connection, the reader may have to wait for the runner's command to finish first
        wait = max(5.0, 20 * period) if owns else timeout_s + TELEMETRY_MARGIN_S
        if form == LOOP:
            flag = f"{REMOTE_ROOT}/telemetry-{secrets.token_hex(6)}.on"
            script = telemetry_script(
                phone.zones, phone.policies, period_s=period, flag=flag,
                max_samples=math.ceil((timeout_s + TELEMETRY_MARGIN_S) / period))
            return TelemetryStream(device, script, owns_device=owns, read_timeout_s=wait,
                                   flag=flag)
        layout = self._layout
        assert layout is not None
        if form == SIMPLE_LOOP:
            return TelemetryStream(device, simple_loop_script(layout.paths, period_s=period),
                                   owns_device=owns, read_timeout_s=wait,
                                   parser=layout.parser(), form=SIMPLE_LOOP)
        return PollingStream(device, sample_command(layout.paths), period_s=period,
                             read_timeout_s=wait, parser=layout.parser())

    def _telemetry_device(self, phone: Phone) -> tuple[Any, bool]:
        """The adb-shell device the telemetry stream reads, and whether it is its own: over
        TCP a connection of its own (see TelemetryStream). Over USB there is one handle, and
        adb-shell reading the stream and the runner's command on it from two threads was seen
        to stall the command (for its whole timeout) now and then: the measurement comes
        first, so USB gets no telemetry (an AdbError saying so)."""
        o = self.options
        if o.adb is None:
            raise AdbError("failed", "it is streamed over --adb HOST:PORT (TCP) only: over "
                                     "USB the stream would share the runner's connection, "
                                     "which can stall the run (see docs/adb.md)")
        side = Phone.connect(adb=o.adb, serial=None, timeout_s=min(o.connect_timeout_s, 10.0))
        return side.device, True

    def _stop_telemetry(self, phone: Phone | None, stream: TelemetryStream | None,
                        note: str) -> str:
        """After the run: wait (bounded) for one sample taken after it, then end the loop,
        killing it through ``phone`` (None: the run failed, just cut the stream); the note,
        with why the stream ended early if it did."""
        if stream is None:
            return note
        ended_early = not stream.alive and stream.error
        if phone is not None and stream.flag is not None:
            # the run removed the flag: one more sample, and the loop ends by itself
            stream.wait_done(TELEMETRY_PERIOD_S + 2.0)
        elif phone is not None:
            # a form without a flag: one sample taken after the run, then it is stopped
            stream.parser.wait_for_samples(len(stream.parser.samples) + 1,
                                           TELEMETRY_PERIOD_S + 2.0,
                                           alive=lambda: stream.alive)
        # else (or if it did not end) kill it; the flag goes too (a temporary file)
        rm = "" if stream.flag is None else f"; rm -f {shlex.quote(stream.flag)}"
        stream.stop(None if phone is None
                    else (lambda cmd: phone.sh(cmd + rm, timeout_s=5.0)))
        if ended_early:
            note = "; ".join(filter(None, [note, f"the telemetry stream ended during the "
                                                 f"case ({stream.error})"]))
        return note

    def _cool_down(self, phone: Phone) -> tuple[dict[str, float], dict[str, Any]]:
        """Wait, at most ``cooldown_max_s``, until the SoC is within ``cooldown_c`` of its
        idle temperature; the last thermal reading and what to record of the wait."""
        o = self.options
        zones = phone.thermal()
        now = soc_temp(zones)
        if self.idle_c is None or now is None:
            return zones, {}    # no readable SoC zone: nothing to wait for
        record: dict[str, Any] = {"soc_idle_c": self.idle_c}
        if o.cooldown_max_s > 0:
            t0 = time.monotonic()
            hot = False
            while now is not None and now > self.idle_c + o.cooldown_c:
                left = o.cooldown_max_s - (time.monotonic() - t0)
                if left <= 0:
                    hot = True
                    break
                time.sleep(min(COOLDOWN_POLL_S, left))
                zones = phone.thermal()
                now = soc_temp(zones)
            record["cooldown_wait_s"] = round(time.monotonic() - t0, 3)
            record["started_hot"] = hot
        record["soc_start_c"] = now
        return zones, record


def _first_sample(stream: TelemetryStream) -> str | None:
    """Wait (at most TELEMETRY_START_S) for the stream's first sample: None once it is in,
    else why not (its stream ended, it printed only other lines, or silence)."""
    parser = stream.parser

    def hopeful() -> bool:
        return stream.alive and parser.skipped < TELEMETRY_START_SKIPS

    if parser.wait_for_samples(1, TELEMETRY_START_S, alive=hopeful) or parser.samples:
        return None
    if parser.skipped:
        return f"{parser.skipped} line(s) that are not samples, e.g. " \
               f"{parser.skipped_examples[0]!r}"
    if not stream.alive:
        return f"its stream ended: {stream.error or 'the shell finished'}"
    return f"none within {TELEMETRY_START_S:g} s"


def _adb_shell_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"adb-shell {version('adb-shell')}"
    except PackageNotFoundError:
        return "adb-shell (not installed)"
