"""Telemetry sampled on the phone during a case: one streaming shell, read on a thread.

A small POSIX shell loop runs on the phone for the length of a case and prints one line per
sample: the phone's uptime (its clock: samples are timed where they are taken, so a late
delivery over adb does not move them), every thermal zone, every CPU frequency policy's
current clock, and the battery's current, voltage, status and the chargers' ``online``
flags. It reads the files with the shell's ``read`` builtin (no process per file: sampling
must not load the phone it measures) and is bounded on the phone itself (at most
``max_samples`` iterations), so a host that vanishes never leaves it running for long; when the
case ends the host kills it by its pid.

The stream format (one record per line; anything else is skipped and counted)::

    P <pid of the loop's shell>
    HZ <zone index> <zone type>             once per zone, before the samples
    HF <policy index> <cpuinfo_max_freq kHz> once per policy
    S <uptime s> z0=<m°C> ... f0=<kHz> ... c=<µA> v=<µV> u=<usb online> a=<ac online> s=<status>

Not every phone's shell (nor every device-side adb implementation) runs that loop: it needs
``read``, ``[`` and ``$((...))``. Two simpler forms sample the same files (``TELEMETRY_FORMS``,
most capable first; the backend falls back from one to the next when a form yields no
sample):

* ``simple loop``: ``while :; do echo C; cat FILE...; sleep P; done``, only ``echo``,
  ``cat`` and ``sleep`` (one ``cat`` process per sample); ended by ``kill`` or by closing
  its stream;
* ``polling``: the same ``echo C; cat FILE...`` as one adb command per sample, sent by the
  host (:class:`PollingStream`).

Their records are ``C`` followed by one line per file, in the order of the ``keys`` the parser
is given (only files read successfully before are listed, so every line has its file). Without
a readable ``/proc/uptime`` the samples are timed on the host's clock when they arrive.

:func:`parse_lines` / :class:`StreamParser` read it (never raising), :func:`summarize` turns
the samples of a case into its :class:`~harness.core.measurement.DeviceTelemetry` and
trace, and :class:`TelemetryStream` runs the loop over adb-shell's ``streaming_shell``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.measurement import DeviceTelemetry

THERMAL = "/sys/class/thermal"
CPUFREQ = "/sys/devices/system/cpu/cpufreq"
POWER = "/sys/class/power_supply"
# thermal zone types of the SoC (CPU clusters, GPU, the SoC sensor); battery, skin, modem,
# charger zones are not the SoC
_SOC_ZONE = re.compile(r"cpu|soc|gpu|tsens|cluster|apc|mtktscpu|little|big|mid", re.I)
_INT = re.compile(r"-?\d+")
CHARGING_STATUSES = ("charging", "full")
UPTIME = "/proc/uptime"
LOOP, SIMPLE_LOOP, POLLING = "loop", "simple loop", "polling"
TELEMETRY_FORMS = (LOOP, SIMPLE_LOOP, POLLING)   # most capable (and lightest) first
# an awake phone draws a few hundred mW at least: less means a unit is not the kernel's
MIN_PLAUSIBLE_W = 0.01


def soc_temp(zones: Mapping[str, float]) -> float | None:
    """The SoC's temperature (°C): the hottest zone whose type names a SoC part, or the
    hottest zone but the battery when no type does; None without readable zones."""
    soc = [t for name, t in zones.items() if _SOC_ZONE.search(name)]
    if not soc:
        soc = [t for name, t in zones.items() if "battery" not in name.lower()]
    return max(soc) if soc else None


def zone_celsius(value: int) -> float:
    """A thermal zone's ``temp``: millidegrees on most phones, whole degrees on a few."""
    return value / 1000 if abs(value) > 500 else float(value)


# ---------------------------------------------------------------------------- the loop


def sample_files(zones: Sequence[str], policies: Sequence[str]) -> list[tuple[str, str]]:
    """(key, path) of every file one sample reads, in the order of its fields: the uptime
    ``t``, zone temperatures ``z<i>``, policy clocks ``f<i>``, battery current ``c``, voltage
    ``v``, chargers online ``u`` (USB) and ``a`` (AC), and the status ``s`` last (it may hold a
    space: "Not charging")."""
    return [("t", UPTIME),
            *((f"z{i}", f"{THERMAL}/{z}/temp") for i, z in enumerate(zones)),
            *((f"f{i}", f"{CPUFREQ}/{p}/scaling_cur_freq") for i, p in enumerate(policies)),
            ("c", f"{POWER}/battery/current_now"), ("v", f"{POWER}/battery/voltage_now"),
            ("u", f"{POWER}/usb/online"), ("a", f"{POWER}/ac/online"),
            ("s", f"{POWER}/battery/status")]


def telemetry_script(zones: Sequence[str], policies: Sequence[str], *, period_s: float,
                     max_samples: int, flag: str | None = None, root: str = "") -> str:
    """The shell loop sampling ``zones`` (``thermal_zoneN`` names) and ``policies``
    (``policyN``) every ``period_s`` seconds, at most ``max_samples`` times. With ``flag`` (a
    file path on the phone) the loop creates it and, after the first sample that finds it
    removed, ends by itself: the runner's command removes it when the run is over (no
    separate command, which a shared USB connection could hold up). ``root`` prefixes every
    path (tests run the script with the host's ``sh`` on a directory tree)."""
    def q(path: str) -> str:
        return shlex.quote(root + path)

    head = ["exec 2>/dev/null", 'echo "P $$"']
    if flag is not None:
        head.append(f"touch {q(flag)}")
    for i, z in enumerate(zones):
        head.append(f"zt=; read zt < {q(f'{THERMAL}/{z}/type')} && echo \"HZ {i} $zt\"")
    for i, p in enumerate(policies):
        head.append(f"fm=; read fm < {q(f'{CPUFREQ}/{p}/cpuinfo_max_freq')} "
                    f"&& echo \"HF {i} $fm\"")
    body: list[str] = []
    for key, path in sample_files(zones, policies):
        # the uptime file holds two figures: the second goes to x
        body.append(f"{key}=; read {key}{' x' if key == 't' else ''} < {q(path)}")
    fields = [f"{key}=${key}" for key, _ in sample_files(zones, policies)[1:]]
    body.append(f'echo "S $t {" ".join(fields)}"')
    if flag is not None:
        body.append(f"[ -e {q(flag)} ] || break")
    loop = (f"n=0; while [ $n -lt {int(max_samples)} ]; do {'; '.join(body)}; "
            f"n=$((n+1)); sleep {period_s:g}; done")
    return "; ".join([*head, loop])


@dataclass(frozen=True)
class SampleLayout:
    """What the simple forms read (the files of :func:`sample_files` found readable, with
    their keys) and the headers the loop would print, read once beforehand."""

    keys: tuple[str, ...]
    paths: tuple[str, ...]
    zone_types: Mapping[int, str] = field(default_factory=dict)
    max_freq_khz: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, zones: Sequence[str], policies: Sequence[str],
           read: Callable[[Sequence[str]], Mapping[str, str]]) -> SampleLayout:
        """The layout of ``zones`` and ``policies``; ``read(paths)`` gives the first line of
        each of ``paths`` that could be read (see ``Phone.read_files``)."""
        files = sample_files(zones, policies)
        types = {i: f"{THERMAL}/{z}/type" for i, z in enumerate(zones)}
        tops = {i: f"{CPUFREQ}/{p}/cpuinfo_max_freq" for i, p in enumerate(policies)}
        values = read([p for _, p in files] + [*types.values(), *tops.values()])
        readable = [(k, p) for k, p in files if p in values]
        return cls(keys=tuple(k for k, _ in readable), paths=tuple(p for _, p in readable),
                   zone_types={i: values[p] for i, p in types.items() if p in values},
                   max_freq_khz={i: int(values[p]) for i, p in tops.items()
                                 if values.get(p, "").isdigit() and int(values[p]) > 0})

    def parser(self) -> StreamParser:
        return StreamParser(self.keys, zone_types=self.zone_types,
                            max_freq_khz=self.max_freq_khz)


def sample_command(paths: Sequence[str]) -> str:
    """One sample of the simple forms: ``C`` and each of ``paths`` (one line each)."""
    return "echo C; cat " + " ".join(shlex.quote(p) for p in paths)


def simple_loop_script(paths: Sequence[str], *, period_s: float) -> str:
    """The ``simple loop`` form: only ``echo``, ``cat``, ``sleep`` and ``while :``. It has no
    bound of its own (that needs ``[``): it ends when killed by its pid or when its stream
    closes (adbd then hangs its shell up)."""
    return f'echo "P $$"; while :; do {sample_command(paths)}; sleep {period_s:g}; done'


# ---------------------------------------------------------------------------- the parser


@dataclass(frozen=True)
class Sample:
    """One line ``S ...``: the phone's uptime and what it read (None: not readable)."""

    uptime_s: float
    zones_mc: Mapping[int, int] = field(default_factory=dict)     # zone index -> raw temp
    freq_khz: Mapping[int, int] = field(default_factory=dict)     # policy index -> kHz
    current_ua: int | None = None
    voltage_uv: int | None = None
    usb_online: bool | None = None
    ac_online: bool | None = None
    status: str | None = None

    @property
    def power_w(self) -> float | None:
        """Battery power |I|·V (W): the sign of ``current_now`` differs between phones."""
        if self.current_ua is None or self.voltage_uv is None:
            return None
        return abs(self.current_ua) * 1e-6 * self.voltage_uv * 1e-6

    @property
    def charging(self) -> bool | None:
        """On a charger (status Charging/Full, or USB/AC online); None when unknowable."""
        if self.usb_online or self.ac_online:
            return True
        if self.status is not None:
            return self.status.strip().lower() in CHARGING_STATUSES
        if self.usb_online is False or self.ac_online is False:
            return False
        return None


class StreamParser:
    """Reads the loop's output as it arrives (bytes in any chunks); never raises.

    Lines that are not a well-formed record are skipped and counted (``skipped``), with the
    first few kept (``skipped_examples``) for the row's note. ``keys`` (see
    :func:`sample_files`) are the fields of the simple forms' ``C`` records, in order;
    ``zone_types`` and ``max_freq_khz`` are then known beforehand (those forms print no
    header). Without the uptime ``t`` among them the samples are timed by the host's
    ``time.monotonic()`` as they arrive (``host_clock``).
    """

    def __init__(self, keys: Sequence[str] | None = None, *,
                 zone_types: Mapping[int, str] | None = None,
                 max_freq_khz: Mapping[int, int] | None = None) -> None:
        self.pid: int | None = None
        self.zone_types: dict[int, str] = dict(zone_types or {})
        self.max_freq_khz: dict[int, int] = dict(max_freq_khz or {})
        self.keys = list(keys or [])
        self.host_clock = keys is not None and "t" not in self.keys
        self._record_lines: list[str] | None = None    # the C record being read
        self.samples: list[Sample] = []
        # when each sample arrived (host time.monotonic()): places the phone's clock on ours
        self.received: list[float] = []
        self._now = 0.0
        self.skipped = 0
        self.skipped_examples: list[str] = []
        self._buf = b""
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)

    def feed(self, data: bytes | str, *, now: float | None = None) -> None:
        """Add a chunk of the stream, arrived at ``now`` (host ``time.monotonic()``, the
        default); complete lines are parsed."""
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        with self._lock:
            self._now = time.monotonic() if now is None else now
            self._buf += data
            *lines, self._buf = self._buf.split(b"\n")
            for raw in lines:
                self._line(raw.decode("utf-8", "replace").strip("\r\x00 "))
            if len(self._buf) > 1 << 16:   # no newline for 64 KiB: not our loop's output
                self._skip(self._buf[:80].decode("utf-8", "replace"))
                self._buf = b""
            self.arrived.notify_all()

    def finish(self) -> None:
        """The stream ended: a last line without its newline is parsed too."""
        with self._lock:
            rest, self._buf = self._buf, b""
        if rest.strip():
            self.feed(rest + b"\n")

    def wait_for_samples(self, count: int, timeout_s: float,
                         alive: Callable[[], bool] = lambda: True) -> bool:
        """Wait (at most ``timeout_s``) until ``count`` samples arrived; False if not."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.samples) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return False
                self.arrived.wait(min(left, 0.1))
            return True

    def _skip(self, line: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < 3:
            self.skipped_examples.append(line[:80])

    def _line(self, line: str) -> None:
        if not line:
            return
        try:
            ok = self._record(line)
        except (ValueError, OverflowError, IndexError):
            ok = False
        if not ok:
            self._skip(line)

    def _values(self, line: str) -> bool:
        """A line of a ``C`` record (simple forms): the record's next value; complete, the
        record is a sample (or skipped when a value is garbled: a line out of step)."""
        lines = self._record_lines
        if lines is None:
            return False
        lines.append(line)
        if len(lines) < len(self.keys):
            return True
        self._record_lines = None
        values = dict(zip(self.keys, lines, strict=True))
        status = values.pop("s", None)
        uptime = values.pop("t", "").split(" ")[0] if not self.host_clock else f"{self._now}"
        head = " ".join([uptime, *(f"{k}={v.strip()}" for k, v in values.items())])
        sample = _sample(head if status is None else f"{head} s={status}")
        if sample is None:
            self._skip(f"C {' | '.join(lines)}")
            return True
        self.samples.append(sample)
        self.received.append(self._now)
        return True

    def _record(self, line: str) -> bool:
        if self.keys and line == "C":
            if self._record_lines:      # the last record lost lines: skip it
                self._skip(f"C {' | '.join(self._record_lines)} (incomplete)")
            self._record_lines = []
            return True
        if self._record_lines is not None:
            return self._values(line)
        kind, _, rest = line.partition(" ")
        if kind == "P" and _INT.fullmatch(rest):
            self.pid = int(rest)
            return True
        if kind in ("HZ", "HF"):
            index, _, value = rest.partition(" ")
            if not index.isdigit() or not value:
                return False
            if kind == "HZ":
                self.zone_types[int(index)] = value.strip()
            elif value.isdigit() and int(value) > 0:
                self.max_freq_khz[int(index)] = int(value)
            else:
                return False
            return True
        if kind == "S":
            sample = _sample(rest)
            if sample is None:
                return False
            self.samples.append(sample)
            self.received.append(self._now)
            return True
        return False


def _sample(rest: str) -> Sample | None:
    """The fields of one ``S`` line, or None when it is not one (no uptime, garbled)."""
    head, sep, status = rest.partition(" s=")
    uptime, *pairs = head.split(" ")
    t = float(uptime)
    if not math.isfinite(t) or t < 0:
        return None
    zones: dict[int, int] = {}
    freqs: dict[int, int] = {}
    power: dict[str, int] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            return None
        if value == "":
            continue            # the file was not readable this time
        if not _INT.fullmatch(value):
            return None
        if key[0] in "zf" and key[1:].isdigit():
            (zones if key[0] == "z" else freqs)[int(key[1:])] = int(value)
        elif key in ("c", "v", "u", "a"):
            power[key] = int(value)
        else:
            return None
    return Sample(uptime_s=t, zones_mc=zones, freq_khz=freqs, current_ua=power.get("c"),
                  voltage_uv=power.get("v"),
                  usb_online=None if "u" not in power else bool(power["u"]),
                  ac_online=None if "a" not in power else bool(power["a"]),
                  status=status.strip() or None if sep else None)


def parse_lines(lines: Iterable[str], keys: Sequence[str] | None = None) -> StreamParser:
    """A parser fed ``lines`` (a whole stream at once), of ``C`` records of ``keys`` if
    given."""
    p = StreamParser(keys)
    for line in lines:
        p.feed(line + "\n")
    p.finish()
    return p


# ---------------------------------------------------------------------------- summary


def run_flags(parsed: StreamParser, window: tuple[float, float]) -> list[bool]:
    """Per sample: whether it was taken while the runner ran (``window``: host
    ``time.monotonic()`` at its start and end). The phone's uptime is placed on the host clock
    by the sample that arrived soonest after it was taken (delivery only ever delays)."""
    pairs = list(zip(parsed.samples, parsed.received, strict=True))
    if not pairs:
        return []
    offset = min(got - s.uptime_s for s, got in pairs)
    return [window[0] <= s.uptime_s + offset <= window[1] for s, _ in pairs]


def summarize(parsed: StreamParser, *, period_s: float, mean_inference_ms: float | None,
              note: str = "", run_window: tuple[float, float] | None = None,
              run_uptime: tuple[float, float] | None = None
              ) -> tuple[DeviceTelemetry, dict[str, Any] | None]:
    """The case's telemetry figures and its trace (``time_s``, ``temp_c``,
    ``clock_fraction``, ``power_w`` per sample, as the emulator's sustained trace names
    them) from the samples of the case; the trace is None without samples.

    Temperatures run from the first sample (just before the run) to the last (just after).
    Clock fractions and power are taken from the samples taken while the runner ran:
    ``run_uptime`` (its start and end on the phone's clock) or else ``run_window`` (on the
    host's ``time.monotonic()``, see :func:`run_flags`); over the whole case when none fell
    inside it (a run shorter than a period; the note says so). Average power is the
    time-weighted (trapezoid) mean of |I|·V; energy per inference is that power times the mean
    inference time (W * ms = mJ). Both are the whole phone's, and meaningless on a charger
    (``energy_meaningful`` False).
    """
    if parsed.host_clock and run_window is not None:
        # samples timed on arrival, on the host's clock: the window is on that clock too
        flags = [run_window[0] <= s.uptime_s <= run_window[1] for s in parsed.samples]
    elif run_uptime is not None:
        # strictly inside: /proc/uptime ticks every 10 ms, a sample of the same tick as
        # the start or the end may be either side of it
        flags = [run_uptime[0] < s.uptime_s < run_uptime[1] for s in parsed.samples]
    elif run_window is not None:
        flags = run_flags(parsed, run_window)
    else:
        flags = [True] * len(parsed.samples)
    order = sorted(range(len(parsed.samples)), key=lambda i: parsed.samples[i].uptime_s)
    samples = [parsed.samples[i] for i in order]
    in_run = [flags[i] for i in order]
    notes = [note] if note else []
    if parsed.skipped:
        notes.append(f"{parsed.skipped} telemetry line(s) skipped, e.g. "
                     f"{parsed.skipped_examples[0]!r}")
    if not samples:
        notes.append("no telemetry sample arrived from the phone")
        return DeviceTelemetry(samples=0, period_s=period_s, skipped_lines=parsed.skipped,
                               note="; ".join(notes)), None
    t0 = samples[0].uptime_s
    types = parsed.zone_types
    temps = [soc_temp({types.get(i, f"zone{i}"): zone_celsius(v)
                       for i, v in s.zones_mc.items()}) for s in samples]
    by_policy = {f"policy{i}": [_fraction(s.freq_khz.get(i), m) for s in samples]
                 for i, m in sorted(parsed.max_freq_khz.items())}
    # the fastest policy relative to its top clock: the cluster the runner keeps busy (an
    # idle cluster sits low by choice of the governor, not because it is throttled)
    clock = [max((f for f in fs if f is not None), default=None)
             for fs in zip(*by_policy.values(), strict=True)] if by_policy \
        else [None] * len(samples)
    power = [s.power_w for s in samples]
    during = in_run
    if not any(in_run):
        if run_window is not None or run_uptime is not None:
            notes.append("no telemetry sample fell inside the run: clocks and power are "
                          "those of the whole case")
        during = [True] * len(samples)
    run_clock = [c for c, d in zip(clock, during, strict=True) if d]
    avg_power = _time_mean([s.uptime_s for s, d in zip(samples, during, strict=True) if d],
                           [p for p, d in zip(power, during, strict=True) if d])
    states = [s.charging for s in samples]
    charging = True if any(states) else (False if states and all(f is False for f in states)
                                         else None)
    if charging is None:
        notes.append("cannot tell whether the phone was on a charger (no battery status)")
    elif charging:
        notes.append("the phone was charging (USB power): energy is not meaningful")
    if avg_power is not None and 0 < avg_power < MIN_PLAUSIBLE_W:
        notes.append(f"a battery power of {avg_power:.2g} W is implausibly low for a phone: "
                     f"this phone may report current_now in mA, not the kernel's µA")
    energy = (avg_power * mean_inference_ms
              if avg_power is not None and mean_inference_ms is not None else None)
    known_t = [t for t in temps if t is not None]
    known_c = [c for c in run_clock if c is not None]
    telemetry = DeviceTelemetry(
        samples=len(samples), period_s=period_s,
        duration_s=round(samples[-1].uptime_s - t0, 3),
        start_temp_c=_first(temps), end_temp_c=_first(temps[::-1]),
        max_temp_c=max(known_t) if known_t else None,
        start_clock_fraction=_first(run_clock), end_clock_fraction=_first(run_clock[::-1]),
        min_clock_fraction=min(known_c) if known_c else None,
        avg_power_w=None if avg_power is None else round(avg_power, 4),
        energy_mj=None if energy is None else round(energy, 4),
        charging=charging, energy_meaningful=charging is False,
        skipped_lines=parsed.skipped, note="; ".join(notes))
    trace = {"source": "adb telemetry",
             "time_s": [round(s.uptime_s - t0, 3) for s in samples],
             "temp_c": [None if t is None else round(t, 3) for t in temps],
             "clock_fraction": [None if c is None else round(c, 4) for c in clock],
             "power_w": [None if p is None else round(p, 4) for p in power],
             "during_run": in_run,
             "clock_fraction_by_policy": {k: [None if f is None else round(f, 4) for f in v]
                                          for k, v in by_policy.items()},
             "zone_types": {str(i): t for i, t in sorted(types.items())}}
    return telemetry, trace


def _fraction(cur: int | None, top: int) -> float | None:
    return None if cur is None or top <= 0 else cur / top


def _first(values: Sequence[float | None]) -> float | None:
    return next((v for v in values if v is not None), None)


def _time_mean(times: Sequence[float], values: Sequence[float | None]) -> float | None:
    """Trapezoid time-weighted mean of the known values (their plain mean when they share
    one instant); None without any."""
    pts = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
    if not pts:
        return None
    span = pts[-1][0] - pts[0][0]
    if len(pts) == 1 or span <= 0:
        return sum(v for _, v in pts) / len(pts)
    area = sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in itertools.pairwise(pts))
    return area / span


# ---------------------------------------------------------------------------- the spool

SPOOLED = "loop (file)"
_SPOOL_MARK = "__telemetry__"


@dataclass(frozen=True)
class Spool:
    """The loop run in the background of the runner's own shell, its samples written to a
    file on the phone and read back, after the run, by the same command: one shell on one
    connection (a USB phone has a single one, which a live stream would have to share with
    the runner's command), and no adb call per sample. ``before`` starts it and waits two
    periods (a sample before the run), ``then`` removes its flag after the run, waits for
    the sample that ends it, and prints the file after a marker; :meth:`parse` reads that."""

    script: str      # telemetry_script(..., flag=flag)
    flag: str
    log: str
    period_s: float

    @property
    def before(self) -> str:
        return (f"sh -c {shlex.quote(self.script)} > {shlex.quote(self.log)} 2>/dev/null & "
                f"sleep {2 * self.period_s:g}")

    @property
    def then(self) -> str:
        return (f"rm -f {shlex.quote(self.flag)}; sleep {2 * self.period_s:g}; "
                f"echo {_SPOOL_MARK}; cat {shlex.quote(self.log)}; "
                f"rm -f {shlex.quote(self.log)}")

    @property
    def cleanup(self) -> str:
        """For a run that did not finish: stop the loop and remove its files."""
        return f"rm -f {shlex.quote(self.flag)} {shlex.quote(self.log)}"

    def parse(self, then_output: str) -> StreamParser:
        _, found, text = then_output.partition(_SPOOL_MARK)
        return parse_lines(text.splitlines() if found else [])


# ---------------------------------------------------------------------------- the stream


class TelemetryStream:
    """The loop running on the phone, read on a daemon thread.

    ``device`` is the adb-shell device the stream is read from: over TCP a connection of its
    own (adb-shell's transport lock would otherwise let a long runner command hold the reader
    off for the whole run), over USB the phone's one handle (``owns_device`` False). The loop
    normally ends by itself once its ``flag`` file is removed; ``stop`` never hangs: it kills
    the loop by its pid, waits a bounded time for the stream to close, then (on a connection
    of its own) closes the device under the reader.
    """

    form = LOOP

    def __init__(self, device: Any, script: str, *, owns_device: bool,
                 read_timeout_s: float, flag: str | None = None,
                 parser: StreamParser | None = None, form: str | None = None) -> None:
        self.device, self.owns_device = device, owns_device
        self.flag = flag            # the loop's flag file (see telemetry_script), if any
        self.parser = parser or StreamParser()
        self.form = form or self.form
        self.error: str | None = None
        self._script = script
        self._read_timeout_s = read_timeout_s
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="adb-telemetry", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return not self._done.is_set()

    def wait_done(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the stream to end; whether it has."""
        return self._done.wait(timeout_s)

    def _chunks(self) -> Iterable[bytes]:
        """What the phone sends, as it arrives."""
        return self.device.streaming_shell(
            self._script, transport_timeout_s=self._read_timeout_s,
            read_timeout_s=self._read_timeout_s, decode=False)

    def _read(self) -> None:
        try:
            for chunk in self._chunks():
                self.parser.feed(chunk)
        except Exception as exc:  # the phone went away, or the stream was cut by stop()
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.parser.finish()
            self._done.set()
            with self.parser.arrived:
                self.parser.arrived.notify_all()

    def stop(self, kill: Callable[[str], object] | None, *, grace_s: float = 2.0) -> None:
        """End the loop: ``kill('kill PID')`` on the phone, then wait at most ``grace_s``
        for the stream to end before closing the device under the reader."""
        self._stopping.set()
        pid = self.parser.pid
        if kill is not None and pid is not None and self.alive:
            with contextlib.suppress(Exception):
                kill(f"kill {pid}")
            self._done.wait(grace_s)
        if self.owns_device:
            _cut(self.device)
            self._done.wait(grace_s)


class PollingStream(TelemetryStream):
    """The ``polling`` form: ``command`` (one sample, see :func:`sample_command`) sent as an
    adb command of its own every ``period_s``, on a connection of its own, until stopped.
    For a phone whose shell runs no loop that streams: heavier (a command per sample) and
    timed on arrival when the uptime is not among the files."""

    form = POLLING

    def __init__(self, device: Any, command: str, *, period_s: float, read_timeout_s: float,
                 parser: StreamParser) -> None:
        self._period_s = period_s
        super().__init__(device, command, owns_device=True, read_timeout_s=read_timeout_s,
                         parser=parser)

    def _chunks(self) -> Iterable[bytes]:
        while not self._stopping.is_set():
            t0 = time.monotonic()
            out = self.device.shell(self._script, transport_timeout_s=self._read_timeout_s,
                                    read_timeout_s=self._read_timeout_s,
                                    timeout_s=self._read_timeout_s, decode=False)
            yield out if isinstance(out, bytes) else str(out).encode()
            self._stopping.wait(max(0.0, self._period_s - (time.monotonic() - t0)))


def _cut(device: Any) -> None:
    """Close an adb-shell device under a thread reading from it, without waiting for it.

    ``AdbDevice.close`` takes the transport lock the reader holds while it waits in
    ``select``: it would wait for that read to time out. Shutting the TCP socket down wakes a
    waiting reader (which then reads the EOF: an error at once with the transport of
    ``device._tcp_transport``), and closing it makes its next ``select`` fail at once; the
    device's own close then runs on a daemon thread.
    """
    sock = getattr(getattr(getattr(device, "_io_manager", None), "_transport", None),
                   "_connection", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def close() -> None:
        with contextlib.suppress(Exception):
            device.close()

    threading.Thread(target=close, name="adb-telemetry-close", daemon=True).start()
