"""A loopback fake Android phone that speaks the real ADB wire protocol over TCP (test code).

It answers an ADB client (adb-shell) on 127.0.0.1 the way adbd does: the CNXN/AUTH handshake
with an RSA token, streams opened with OPEN and ended with CLSE (several at once on one
connection, each served on its own thread), WRTE packets each acknowledged with OKAY,
24-byte headers with the payload's byte-sum checksum and ``magic = command ^ 0xFFFFFFFF``.
Two services exist:

* ``shell:<cmd>``: a tiny dispatcher, never a real shell: ``;`` and ``&&`` lists of getprop,
  sleep, the spooled telemetry loop started in the background (``sh -c LOOP > FILE
  2>/dev/null &``, its output appended to FILE on a thread),
  cat, chmod, ls, rm, mkdir -p, echo (``$?`` expanded), sha256sum, true, kill, and running a
  pushed executable, which acts as ONNX Runtime's ``onnxruntime_perf_test`` (its 1.17 output
  format), or as TFLite's ``benchmark_model`` when given ``--graph=`` (TF 2.x format);
  and the harness's telemetry loop (``while [ $n -lt N ]; do ...; done`` of variable
  assignments, ``read VAR < FILE``, ``[ -e FILE ] || break``, ``echo`` with ``$VAR``/``$$``
  and ``sleep``, see
  harness/backends/adb/telemetry.py), interpreted with its own variables and streamed one
  WRTE per ``echo`` while it runs, until ``kill PID``, the host closing the stream, or the
  phone vanishing;
* ``sync:``: STAT, SEND (DATA.../DONE -> OKAY), RECV and QUIT, enough for push, pull and stat.

The phone has an Android-like state: properties (``ro.soc.model`` SM8650...), files under
``/data/local/tmp``, thermal zones that warm while the runner runs and cool after, battery
files (``current_now`` drawing more while the runner runs), cpufreq policies whose clocks drop
as the SoC heats, ``/proc/uptime``. Knobs: ``run_heat_mc`` and ``cool_tau_s`` (how hot a run
makes it, how fast it cools), ``run_s`` (how long a runner run takes: the heat comes in over
it), ``battery_status`` and ``usb_online`` (on a charger or not);
for fault tests ``accepted_keys`` (None: any key; a list of public keys: only
those; [] none: the "unauthorized" phone), ``runner_mode`` (ok, crash, hang, garbage),
``vanish_after_runs`` (the phone goes away after that many runner runs; ``vanish_after_s``
into the next one); ``lacks``, the commands and shell words this phone's shell does not know
(``read``, ``[``, ``while``, ``sha256sum``...: "not found", as on a stripped-down shell or
another implementation of the device side; ``$?``: echoed as is, not expanded);
``unreadable``, paths it cannot read (``/proc/uptime`` in a sandbox).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import math
import os
import posixpath
import queue
import re
import shlex
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

VERSION = 0x01000000
MAXDATA = 256 * 1024
CHUNK = 4096


def _cmd(name: bytes) -> int:
    return int(struct.unpack("<I", name)[0])


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE = (_cmd(c) for c in
                                      (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
# the DER DigestInfo prefix of SHA-1 in a PKCS#1 v1.5 signature
_SHA1_PREFIX = bytes.fromhex("3021300906052b0e03021a05000414")


def pack(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """One ADB packet: the 24-byte header (with checksum and magic) and the payload."""
    return struct.pack("<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF,
                       command ^ 0xFFFFFFFF) + data


@dataclass
class _File:
    data: bytes
    mode: int = 0o100644
    mtime: int = 0


class PhoneGone(Exception):
    """The phone went away (cable pulled)."""


@dataclass
class FakeAndroid:
    """The phone's state and its ADB server; use as a context manager."""

    props: dict[str, str] = field(default_factory=lambda: {
        "ro.soc.manufacturer": "QTI", "ro.soc.model": "SM8650",
        "ro.board.platform": "pineapple", "ro.product.model": "Fake Phone 8",
        "ro.serialno": "FAKE0001", "ro.build.version.sdk": "34"})
    accepted_keys: list[Any] | None = None     # rsa.PublicKey list; None: accept any key
    runner_mode: str = "ok"                    # ok | crash | hang | garbage
    hang_s: float = 30.0
    vanish_after_runs: int | None = None
    base_latency_ms: float = 1.5
    run_heat_mc: float = 4000.0     # heat of one runner run (plus 40 m°C per iteration)
    cool_tau_s: float = 0.3         # the time constant of cooling back to idle (tests: fast)
    run_s: float = 0.0              # wall time of one runner run (heat comes in over it)
    vanish_after_s: float = 0.0     # with vanish_after_runs: how far into the run it goes
    battery_status: str = "Charging"
    usb_online: bool = True
    idle_current_ua: int = 350_000     # drawn from the battery (negative: discharging)
    run_current_ua: int = 1_250_000    # while the runner runs
    voltage_uv: int = 4_213_000
    lacks: frozenset[str] = frozenset()
    unreadable: frozenset[str] = frozenset()
    files: dict[str, _File] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {"/", "/data", "/data/local",
                                                    "/data/local/tmp"})
    commands: list[str] = field(default_factory=list)    # every shell command received
    executed: list[str] = field(default_factory=list)    # the name of every command run
    runs: list[list[str]] = field(default_factory=list)  # argv of each runner run
    pushes: list[str] = field(default_factory=list)      # device paths pushed
    sync_requests: list[str] = field(default_factory=list)  # STAT, SEND, RECV... received
    removed: list[str] = field(default_factory=list)     # paths given to rm
    auth_attempts: int = 0
    loops_started: int = 0                               # telemetry loops begun
    loops_ended: list[str] = field(default_factory=list)  # and why each ended

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._boot = time.monotonic() - 5000.0
        self._running = 0                # runner runs in progress
        self._loops: dict[int, threading.Event] = {}   # pid -> killed
        self._next_pid = 4200
        # (name, cpuinfo_max_freq kHz): little, big and prime clusters as on an SM8650
        self._policies = [("policy0", 2265600), ("policy2", 3148800), ("policy7", 3302400)]
        for name, top in self._policies:
            base = f"/sys/devices/system/cpu/cpufreq/{name}"
            self._put_dir(base)
            self.files[f"{base}/cpuinfo_max_freq"] = _File(f"{top}\n".encode())
        self._conns: list[socket.socket] = []
        self._heat_mc = 0.0
        self._heat_at = time.monotonic()
        self._zones = [("cpu-0-0-0", 36000), ("cpu-1-0-0", 37000), ("gpuss-0", 34000),
                       ("battery", 30000)]
        for i, (name, _) in enumerate(self._zones):
            self._put_dir(f"/sys/class/thermal/thermal_zone{i}")
            self.files[f"/sys/class/thermal/thermal_zone{i}/type"] = _File(
                (name + "\n").encode())
        battery = {"capacity": "87", "temp": "298", "charge_counter": "3900000"}
        self._put_dir("/sys/class/power_supply/battery")
        self._put_dir("/sys/class/power_supply/usb")
        for k, v in battery.items():
            self.files[f"/sys/class/power_supply/battery/{k}"] = _File((v + "\n").encode())
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ lifecycle
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeAndroid:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening and drop every connection (also how the phone 'vanishes')."""
        self._stop.set()
        for s in [self._sock, *self._conns]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._thread.join(timeout=5)

    @property
    def gone(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ state
    def _put_dir(self, path: str) -> None:
        while path not in self.dirs:
            self.dirs.add(path)
            path = posixpath.dirname(path)

    def zone_temp_mc(self, index: int) -> int:
        """Idle temperature plus the runner's heat, decaying with ``cool_tau_s``."""
        idle = self._zones[index][1]
        heat = self._heat_mc * math.exp(-(time.monotonic() - self._heat_at) / self.cool_tau_s)
        share = 0.4 if self._zones[index][0] == "battery" else 1.0
        return int(idle + heat * share)

    def _heat(self, amount_mc: float) -> None:
        now = time.monotonic()
        self._heat_mc = (self._heat_mc * math.exp(-(now - self._heat_at) / self.cool_tau_s)
                         + amount_mc)
        self._heat_at = now

    def clock_khz(self, index: int) -> int:
        """A policy's clock: low while idle (the governor's choice), its top while the runner
        runs, less as the SoC passes 40 °C (throttling: down to half at 60 °C)."""
        top = self._policies[index][1]
        if not self._running:
            return int(top * 0.3)
        over = max(0.0, self.zone_temp_mc(0) / 1000 - 40.0)
        return int(top * max(0.5, 1.0 - over / 40.0))

    def _read(self, path: str) -> bytes | None:
        path = posixpath.normpath(path)
        if path in self.unreadable:
            return None
        if path.startswith("/sys/class/thermal/thermal_zone") and path.endswith("/temp"):
            i = int(path.split("thermal_zone")[1].split("/")[0])
            if i < len(self._zones):
                return f"{self.zone_temp_mc(i)}\n".encode()
        if path.endswith("/scaling_cur_freq"):
            for i, (name, _) in enumerate(self._policies):
                if path == f"/sys/devices/system/cpu/cpufreq/{name}/scaling_cur_freq":
                    return f"{self.clock_khz(i)}\n".encode()
        if path == "/proc/uptime":
            up = time.monotonic() - self._boot
            return f"{up:.2f} {up * 7.5:.2f}\n".encode()
        battery = "/sys/class/power_supply/battery/"
        if path.startswith(battery):
            charging = self.battery_status.lower() in ("charging", "full")
            draw = self.run_current_ua if self._running else self.idle_current_ua
            value = {"status": self.battery_status, "voltage_now": str(self.voltage_uv),
                     # the kernel's sign: positive into the battery, negative out of it
                     "current_now": str(draw if charging else -draw)}.get(path[len(battery):])
            if value is not None:
                return (value + "\n").encode()
        if path == "/sys/class/power_supply/usb/online":
            return b"1\n" if self.usb_online else b"0\n"
        f = self.files.get(path)
        return None if f is None else f.data

    # ------------------------------------------------------------------ server
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            _Connection(self, conn).run()
        except (OSError, PhoneGone, struct.error):
            pass
        finally:
            conn.close()

    # ------------------------------------------------------------------ telemetry loop
    def loop(self, command: str) -> Iterator[bytes]:
        """Run the harness's telemetry loop (a ``while`` over builtins), yielding what each
        ``echo`` prints as it prints it; ends at ``kill PID`` (its ``$$``), when the loop's
        bound is reached, or with the phone or the stream."""
        self.commands.append(command)
        pid, self._next_pid = self._next_pid, self._next_pid + 1
        killed = threading.Event()
        self._loops[pid] = killed
        self.loops_started += 1
        lex = shlex.shlex(command, posix=True, punctuation_chars=";&|<")
        lex.whitespace_split = True
        program, _ = _parse_block(list(lex), 0, ())
        why = "stream closed or phone gone"
        try:
            yield from self._exec(program, {"$": str(pid)}, killed)
            why = "ended"         # its bound, or its flag file removed
        except _Killed:
            why = "killed"
        finally:
            self._loops.pop(pid, None)
            self.loops_ended.append(why)

    def _exec(self, program: list[tuple[str, Any]], env: dict[str, str],
              killed: threading.Event) -> Iterator[bytes]:
        rc = 0
        for connector, node in program:
            if (connector == "&&" and rc != 0) or (connector == "||" and rc == 0):
                continue
            if killed.is_set():
                raise _Killed
            if self.gone:
                raise PhoneGone("cable pulled")
            if node[0] == "while":
                try:
                    while (yield from self._exec(node[1], env, killed)) == 0:
                        yield from self._exec(node[2], env, killed)
                except _Break:
                    pass
                rc = 0
                continue
            out, rc = self._builtin(node[1], env, killed)
            if out:
                yield out
        return rc

    def _builtin(self, argv: list[str], env: dict[str, str],
                 killed: threading.Event) -> tuple[bytes, int]:
        """One simple command of the loop, with the shell's builtins it uses."""
        name, args = argv[0], [_expand(a, env) for a in argv[1:]]
        if name in self.lacks:
            return _not_found(name)
        if name in (":", "true"):
            return b"", 0
        if "=" in name and name.split("=")[0].isidentifier() and not args:
            key, _, value = name.partition("=")
            env[key] = _expand(value, env)
            return b"", 0
        if name == "exec":
            return b"", 0       # only `exec 2>/dev/null` is sent: stderr is not faked apart
        if name == "echo":
            return (" ".join(args) + "\n").encode(), 0
        if name == "read" and "<" in args:
            at = args.index("<")
            names, data = args[:at], self._read(args[at + 1]) if at + 1 < len(args) else None
            if data is None:
                return b"", 1
            values = data.decode().splitlines()[0].split(None, max(0, len(names) - 1))
            for i, var in enumerate(names):
                env[var] = values[i] if i < len(values) else ""
            return b"", 0
        if name == "[" and len(args) == 4 and args[1] == "-lt" and args[3] == "]":
            return b"", 0 if int(args[0]) < int(args[2]) else 1
        if name == "[" and len(args) == 3 and args[0] == "-e" and args[2] == "]":
            path = posixpath.normpath(args[1])
            return b"", 0 if path in self.files or path in self.dirs else 1
        if name == "break":
            raise _Break
        if name == "sleep":
            killed.wait(float(args[0]))
            return b"", 0
        return self._run([name, *args], 0)

    # ------------------------------------------------------------------ shell
    def shell(self, command: str) -> tuple[bytes, int]:
        """Run ``command`` through the dispatcher: its output and exit status."""
        self.commands.append(command)
        lex = shlex.shlex(command, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        tokens = list(lex)
        out, rc, argv, op = b"", 0, [], ";"
        for tok in [*tokens, ";"]:
            if tok in (";", "&&", "||"):
                if argv and (op == ";" or (op == "&&" and rc == 0)
                             or (op == "||" and rc != 0)):
                    o, rc = self._run(argv, rc)
                    out += o
                argv, op = [], tok
            elif tok == "&" and argv[:2] == ["sh", "-c"] and ">" in argv \
                    and "&" not in self.lacks:
                # the spooled telemetry loop: `sh -c SCRIPT > FILE 2>/dev/null &`
                self._background(argv[2], argv[argv.index(">") + 1])
                argv, op = [], ";"
            elif tok in ("|", "&", "&&&"):
                return out + b"/system/bin/sh: pipes are not faked\n", 2
            else:
                argv.append(tok)
        return out, rc

    def _background(self, script: str, path: str) -> None:
        """Run the telemetry loop ``script`` on a thread, its output appended to ``path``."""
        path = posixpath.normpath(path)
        self.files[path] = _File(b"")

        def run() -> None:
            with contextlib.suppress(PhoneGone):
                for chunk in self.loop(script):
                    f = self.files.get(path)
                    if f is None:
                        break
                    f.data += chunk

        threading.Thread(target=run, name="fake-phone-background", daemon=True).start()

    def _run(self, argv: list[str], last_rc: int) -> tuple[bytes, int]:
        name, args = argv[0], argv[1:]
        self.executed.append(name)
        if name in self.lacks:
            return _not_found(name)
        if name == "sleep":
            time.sleep(float(args[0]))
            return b"", 0
        if name == "echo":
            status = "$?" if "$?" in self.lacks else str(last_rc)
            return (" ".join(a.replace("$?", status) for a in args) + "\n").encode(), 0
        if name == "true":
            return b"", 0
        if name == "touch":
            for p in (posixpath.normpath(a) for a in args if not a.startswith("-")):
                if posixpath.dirname(p) not in self.dirs:
                    return f"touch: '{p}': No such file or directory\n".encode(), 1
                self.files.setdefault(p, _File(b""))
            return b"", 0
        if name == "kill":
            rc, out = 0, b""
            for a in (a for a in args if not a.startswith("-")):
                killed = self._loops.get(int(a)) if a.isdigit() else None
                if killed is None:
                    out += f"/system/bin/sh: kill: {a}: No such process\n".encode()
                    rc = 1
                else:
                    killed.set()
            return out, rc
        if name == "getprop":
            if not args:
                return "".join(f"[{k}]: [{v}]\n" for k, v in self.props.items()).encode(), 0
            return (self.props.get(args[0], "") + "\n").encode(), 0
        if name == "cat":
            out, rc = b"", 0
            for p in args:
                data = self._read(p)
                if data is None:
                    out += f"cat: {p}: No such file or directory\n".encode()
                    rc = 1
                else:
                    out += data
            return out, rc
        if name == "mkdir":
            for p in (a for a in args if not a.startswith("-")):
                self._put_dir(posixpath.normpath(p))
            return b"", 0
        if name == "chmod":
            mode, paths = int(args[0], 8), args[1:]
            rc, out = 0, b""
            for p in paths:
                f = self.files.get(posixpath.normpath(p))
                if f is None:
                    out += f"chmod: {p}: No such file or directory\n".encode()
                    rc = 1
                else:
                    f.mode = (f.mode & ~0o7777) | mode
            return out, rc
        if name == "rm":
            # the shell expands a glob (a word with * matching nothing stays as it is)
            words = [posixpath.normpath(a) for a in args if not a.startswith("-")]
            for p in [m for w in words for m in (sorted(
                    f for f in self.files if fnmatch.fnmatchcase(f, w)) or [w]
                    if "*" in w else [w])]:
                self.removed.append(p)
                self.files.pop(p, None)
                for k in [k for k in self.files if k.startswith(p + "/")]:
                    del self.files[k]
                self.dirs = {d for d in self.dirs if d != p and not d.startswith(p + "/")}
            return b"", 0
        if name == "ls":
            paths = [a for a in args if not a.startswith("-")] or ["/data/local/tmp"]
            p = posixpath.normpath(paths[0])
            if p in self.files:
                return (p + "\n").encode(), 0
            if p not in self.dirs:
                return f"ls: {p}: No such file or directory\n".encode(), 1
            names = {k[len(p) + 1:].split("/")[0] for k in [*self.files, *self.dirs]
                     if k.startswith(p.rstrip("/") + "/") and k != p}
            return "".join(n + "\n" for n in sorted(names)).encode(), 0
        if name == "sha256sum":
            out, rc = b"", 0
            for p in args:
                data = self._read(p)
                if data is None:
                    out += f"sha256sum: {p}: No such file or directory\n".encode()
                    rc = 1
                else:
                    out += f"{hashlib.sha256(data).hexdigest()}  {p}\n".encode()
            return out, rc
        f = self.files.get(posixpath.normpath(name))
        if f is None:
            return _not_found(name)
        if not f.mode & 0o111:
            return f"/system/bin/sh: {name}: can't execute: Permission denied\n".encode(), 126
        return self._perf_test(argv)

    # ------------------------------------------------------------------ the runner
    def _perf_test(self, argv: list[str]) -> tuple[bytes, int]:
        """``onnxruntime_perf_test [options] model_path``, as ONNX Runtime 1.17 prints it;
        with ``vanish_after_runs`` N, run N+1 finds the cable pulled."""
        if self.vanish_after_runs is not None and len(self.runs) >= self.vanish_after_runs:
            self._running += 1
            self._stop.wait(self.vanish_after_s)
            self.close()
            raise PhoneGone("cable pulled")
        self.runs.append(argv)
        self._running += 1
        try:
            return self._perf_test_output(argv)
        finally:
            self._running -= 1

    def _perf_test_output(self, argv: list[str]) -> tuple[bytes, int]:
        if any(a.startswith("--graph=") for a in argv[1:]):
            return self._benchmark_model_output(argv)
        opts: dict[str, str] = {}
        positional: list[str] = []
        it = iter(argv[1:])
        for a in it:
            if a in ("-I", "-s"):
                opts[a] = ""
            elif a.startswith("-"):
                opts[a] = next(it, "")
            else:
                positional.append(a)
        if not positional:
            return b"perf_test [options...] model_path [result_file]\n", 255
        model = posixpath.normpath(positional[0])
        if model not in self.files:
            return (f"Load model from {model} failed:Load model {model} failed. File doesn't "
                    f"exist\n").encode(), 255
        if self.runner_mode == "crash":
            return b"Segmentation fault\n", 139
        if self.runner_mode == "hang":
            self._stop.wait(self.hang_s)
        if self.runner_mode == "garbage":
            return b"something unexpected\n", 0
        n = int(opts.get("-r", "100"))
        size_mb = len(self.files[model].data) / 1e6
        lat = self._simulate_run(n, size_mb)
        srt = sorted(lat)

        def pct(p: float) -> float:
            return srt[min(n - 1, math.ceil(p / 100.0 * n) - 1)] / 1e3

        total = sum(lat) / 1e3
        lines = [
            f"Session creation time cost: {0.0123 + size_mb / 100:.4f} s",
            f"First inference time cost: {int(lat[0] * 3)} ms",
            f"Total inference time cost: {total:.5f} s",
            f"Total inference requests: {n}",
            f"Average inference time cost: {sum(lat) / n:.5f} ms",
            f"Total inference run time: {total * 1.01:.5f} s",
            f"Number of inferences per second: {n / total:.2f} ",
            "Avg CPU usage: 96 %",
            f"Peak working set size: {int(31_000_000 + len(self.files[model].data) * 2)} bytes",
        ]
        if "-s" in opts:
            lines += [f"Min Latency: {srt[0] / 1e3:.6f} s", f"Max Latency: {srt[-1] / 1e3:.6f} s",
                      f"P50 Latency: {pct(50):.6f} s", f"P90 Latency: {pct(90):.6f} s",
                      f"P95 Latency: {pct(95):.6f} s", f"P99 Latency: {pct(99):.6f} s",
                      f"P999 Latency: {pct(99.9):.6f} s"]
        return ("\n".join(lines) + "\n").encode(), 0

    def _simulate_run(self, n: int, size_mb: float) -> list[float]:
        """``n`` inference latencies (ms) of a model of ``size_mb``, taking ``run_s`` of wall
        time over which the run's heat comes in; slower as the SoC warms."""
        heat = self.run_heat_mc + 40.0 * n
        steps = max(1, int(self.run_s / 0.01))
        for _ in range(steps if self.run_s > 0 else 0):   # the heat builds over the run
            if self._stop.wait(self.run_s / steps):
                raise PhoneGone("cable pulled")
            self._heat(heat / steps)
        if self.run_s <= 0:
            self._heat(heat)
        warm = 1.0 + max(0.0, self.zone_temp_mc(0) - 36000) / 100000.0
        return [(self.base_latency_ms + size_mb) * warm * (1.0 + 0.05 * ((i * 7) % 11) / 10)
                for i in range(n)]

    def _benchmark_model_output(self, argv: list[str]) -> tuple[bytes, int]:
        """TFLite's ``benchmark_model --graph=M --num_runs=N ...`` as TF 2.x prints it (the
        fake runs whatever file it is given: the format is what is tested)."""
        flags = dict(a[2:].partition("=")[::2] for a in argv[1:] if a.startswith("--"))
        model = posixpath.normpath(flags.get("graph", ""))
        if model not in self.files:
            return (f"INFO: STARTING!\nERROR: Could not open '{model}'.\nERROR: Failed to "
                    f"mmap model {model}\nBenchmarking failed.\n").encode(), 1
        if self.runner_mode == "crash":
            return b"INFO: STARTING!\nSegmentation fault\n", 139
        n = int(flags.get("num_runs", "50"))
        size_mb = len(self.files[model].data) / 1e6
        lat = [x * 1e3 for x in self._simulate_run(n + 1, size_mb)]   # µs; one warm-up
        warm, timed = lat[:1], lat[1:]
        srt = sorted(timed)
        mean = sum(timed) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in timed) / n)
        init_us = 3337 + size_mb * 1000
        lines = [
            "INFO: STARTING!",
            f"INFO: Log parameter values verbosely: [0]\nINFO: Num threads: "
            f"[{flags.get('num_threads', '-1')}]\nINFO: Graph: [{model}]",
            "INFO: Loaded model " + model,
            f"INFO: The input model file size (MB): {size_mb:g}",
            f"INFO: Initialized session in {init_us / 1e3:.3f}ms.",
            "INFO: Running benchmark for at least 1 iterations and at least 0 seconds but "
            "terminate if exceeding 150 seconds.",
            f"INFO: count=1 first={int(warm[0])} curr={int(warm[0])} min={int(warm[0])} "
            f"max={int(warm[0])} avg={warm[0]:g} std=0 p5={int(warm[0])} "
            f"median={int(warm[0])} p95={int(warm[0])}",
            "",
            f"INFO: Running benchmark for at least {n} iterations and at least 0 seconds but "
            "terminate if exceeding 150 seconds.",
            f"INFO: count={n} first={int(timed[0])} curr={int(timed[-1])} min={int(srt[0])} "
            f"max={int(srt[-1])} avg={mean:g} std={int(std)} p5={int(_pct(srt, 5))} "
            f"median={int(_pct(srt, 50))} p95={int(_pct(srt, 95))}",
            "",
            f"INFO: Inference timings in us: Init: {int(init_us)}, First inference: "
            f"{int(warm[0])}, Warmup (avg): {warm[0]:g}, Inference (avg): {mean:g}",
            "INFO: Note: as the benchmark tool itself affects memory footprint, the following "
            "is only APPROXIMATE to the actual memory footprint of the model at runtime. Take "
            "the information at your discretion.",
            f"INFO: Peak memory footprint (MB): init={3.5 + size_mb:g} "
            f"overall={12.25 + 2 * size_mb:g}",
        ]
        return ("\n".join(lines) + "\n").encode(), 0


class _Killed(Exception):
    """The telemetry loop got ``kill PID``."""


class _Break(Exception):
    """``break`` out of the telemetry loop's ``while``."""


def _parse_block(tokens: list[str], i: int, until: tuple[str, ...]
                 ) -> tuple[list[tuple[str, Any]], int]:
    """Statements from ``tokens[i:]`` up to a word in ``until`` (``do``, ``done``): a list
    of (connector before it, node); a node is ("simple", argv) or ("while", cond, body)."""
    program: list[tuple[str, Any]] = []
    argv: list[str] = []
    connector = ";"
    while i < len(tokens):
        tok = tokens[i]
        if not argv and tok in until:
            break
        if not argv and tok == "while":
            cond, i = _parse_block(tokens, i + 1, ("do",))
            body, i = _parse_block(tokens, i + 1, ("done",))
            program.append((connector, ("while", cond, body)))
        elif tok in (";", "&&", "||"):
            if argv:
                program.append((connector, ("simple", argv)))
            argv, connector = [], tok
        elif tok == "2>/dev/null":
            pass
        else:
            argv.append(tok)
        i += 1
    if argv:
        program.append((connector, ("simple", argv)))
    return program, i


def _not_found(name: str) -> tuple[bytes, int]:
    return f"/system/bin/sh: {name}: inaccessible or not found\n".encode(), 127


def _expand(word: str, env: dict[str, str]) -> str:
    """``$((a+b))``, ``$$`` and ``$NAME`` in a word of the telemetry loop."""
    def arith(m: Any) -> str:
        return str(sum(int(_expand(t if t.startswith("$") or not t.isidentifier()
                                   else "$" + t, env) or 0)
                       for t in m.group(1).split("+")))

    word = re.sub(r"\$\(\((.*?)\)\)", arith, word)
    word = word.replace("$$", env["$"])
    return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: env.get(m.group(1), ""), word)


def _pct(sorted_values: list[float], p: float) -> float:
    n = len(sorted_values)
    return sorted_values[min(n - 1, max(0, math.ceil(p / 100.0 * n) - 1))]


def _verify(signature: bytes, token: bytes, key: Any) -> bool:
    """PKCS#1 v1.5 over ``token`` taken as a SHA-1 digest, checked with an rsa.PublicKey."""
    k = (key.n.bit_length() + 7) // 8
    m = pow(int.from_bytes(signature, "big"), key.e, key.n).to_bytes(k, "big")
    return m.endswith(b"\x00" + _SHA1_PREFIX + token) and m.startswith(b"\x00\x01\xff")


class _Connection:
    """One client connection: the handshake, then streams multiplexed as adbd does: each OPEN
    is served on a thread of its own, and the packets the host sends are routed to their
    stream by its id (a telemetry loop can stream while a command runs beside it)."""

    def __init__(self, phone: FakeAndroid, sock: socket.socket) -> None:
        self.phone, self.sock = phone, sock
        self.next_id = 100
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._inboxes: dict[int, queue.Queue[tuple[int, int, int, bytes] | None]] = {}

    def recv(self) -> tuple[int, int, int, bytes]:
        header = self._exact(24)
        command, arg0, arg1, length, check, magic = struct.unpack("<6I", header)
        if magic != command ^ 0xFFFFFFFF:
            raise PhoneGone("bad magic")
        data = self._exact(length)
        if check and sum(data) & 0xFFFFFFFF != check:
            raise PhoneGone("bad checksum")
        if self.phone.gone:
            raise PhoneGone
        return command, arg0, arg1, data

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise PhoneGone("closed")
            buf += chunk
        return buf

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        if self.phone.gone:
            raise PhoneGone
        with self._send_lock:      # streams' threads share the socket
            self.sock.sendall(pack(command, arg0, arg1, data))

    def run(self) -> None:
        self._handshake()
        try:
            while True:
                packet = self.recv()
                command, arg0, arg1, data = packet
                if command == OPEN:
                    self.next_id += 1
                    inbox: queue.Queue[tuple[int, int, int, bytes] | None] = queue.Queue()
                    with self._lock:
                        self._inboxes[self.next_id] = inbox
                    threading.Thread(target=self._stream, daemon=True, args=(
                        arg0, self.next_id, data.rstrip(b"\0").decode(), inbox)).start()
                    continue
                with self._lock:
                    box = self._inboxes.get(arg1)
                if box is not None:
                    box.put(packet)
                # a CLSE or OKAY for a stream already closed is ignored, as adbd does
        finally:
            with self._lock:
                boxes = list(self._inboxes.values())
            for box in boxes:      # the connection is gone, and every stream with it
                box.put(None)

    def next_packet(self, inbox: queue.Queue[tuple[int, int, int, bytes] | None]
                    ) -> tuple[int, int, int, bytes]:
        packet = inbox.get()
        if packet is None:
            raise PhoneGone("connection closed")
        return packet

    def _handshake(self) -> None:
        command, *_ = self.recv()
        if command != CNXN:
            raise PhoneGone("expected CNXN")
        phone = self.phone
        while True:
            token = os.urandom(20)
            self.send(AUTH, AUTH_TOKEN, 0, token)
            command, arg0, _, data = self.recv()
            if command != AUTH:
                raise PhoneGone("expected AUTH")
            if arg0 == AUTH_RSAPUBLICKEY:
                # a real phone shows "Allow USB debugging?"; nobody taps it here
                while True:
                    self.recv()
            phone.auth_attempts += 1
            keys = phone.accepted_keys
            if keys is None or any(_verify(data, token, k) for k in keys):
                break
        banner = (f"device::ro.product.name=fake;ro.product.model="
                  f"{phone.props['ro.product.model']};ro.product.device=fake;features=cmd\0")
        self.send(CNXN, VERSION, MAXDATA, banner.encode())

    def _stream(self, host_id: int, dev_id: int, service: str,
                inbox: queue.Queue[tuple[int, int, int, bytes] | None]) -> None:
        try:
            self._open(host_id, dev_id, service, inbox)
        except (_StreamClosed, PhoneGone, OSError):
            pass       # this stream ends; a phone gone closes the connection by itself
        finally:
            with self._lock:
                self._inboxes.pop(dev_id, None)

    def _open(self, host_id: int, dev_id: int, service: str,
              inbox: queue.Queue[tuple[int, int, int, bytes] | None]) -> None:
        if service.startswith("shell:"):
            self.send(OKAY, dev_id, host_id)
            command = service[len("shell:"):]
            # a loop streamed as the command itself (not one started in the background)
            if re.search(r"\bwhile\b", command) and "while" not in self.phone.lacks \
                    and not command.startswith("sh -c "):
                outputs: Iterator[bytes] = _Pipe(self.phone.loop(command))
            else:
                outputs = iter([self.phone.shell(command)[0]])
            try:
                for out in outputs:
                    for i in range(0, len(out), CHUNK):
                        self._write(dev_id, host_id, out[i:i + CHUNK], inbox)
            finally:
                if isinstance(outputs, _Pipe):
                    outputs.close()
            self.send(CLSE, dev_id, host_id)
        elif service == "sync:":
            self.send(OKAY, dev_id, host_id)
            _Sync(self, dev_id, host_id, inbox).run()
        else:
            self.send(CLSE, 0, host_id)

    def _write(self, dev_id: int, host_id: int, data: bytes,
               inbox: queue.Queue[tuple[int, int, int, bytes] | None]) -> None:
        """WRTE one packet and wait for its OKAY."""
        self.send(WRTE, dev_id, host_id, data)
        while True:
            command, *_ = self.next_packet(inbox)
            if command == OKAY:
                return
            if command == CLSE:
                raise _StreamClosed


class _StreamClosed(Exception):
    """The host closed the stream (CLSE) before its end."""


class _Pipe:
    """A shell's stdout as adbd reads it: the shell writes into a pipe (64 KiB) at its own
    pace on a thread of its own while the stream sends what is in it as the host takes it;
    a full pipe blocks the shell; a closed one ends it at its next write (SIGPIPE)."""

    SIZE = 64 * 1024

    def __init__(self, producer: Iterator[bytes]) -> None:
        self._producer = producer
        self._chunks: queue.Queue[bytes | None] = queue.Queue()
        self._room = threading.Semaphore(self.SIZE // 256)   # about 256 bytes a line
        self._closed = threading.Event()
        threading.Thread(target=self._fill, daemon=True).start()

    def _fill(self) -> None:
        try:
            for chunk in self._producer:
                while not self._room.acquire(timeout=0.1):
                    if self._closed.is_set():
                        return
                if self._closed.is_set():
                    return        # SIGPIPE: the generator is closed, its loop ends
                self._chunks.put(chunk)
        except PhoneGone:
            pass
        finally:
            close = getattr(self._producer, "close", None)
            if close is not None:
                close()
            self._chunks.put(None)

    def __iter__(self) -> _Pipe:
        return self

    def __next__(self) -> bytes:
        chunk = self._chunks.get()
        if chunk is None:
            raise StopIteration
        self._room.release()
        return chunk

    def close(self) -> None:
        self._closed.set()


class _Sync:
    """The ``sync:`` service: records of a 4-byte id and a u32, reassembled across WRTEs."""

    def __init__(self, conn: _Connection, dev_id: int, host_id: int,
                 inbox: queue.Queue[tuple[int, int, int, bytes] | None]) -> None:
        self.conn, self.dev_id, self.host_id = conn, dev_id, host_id
        self.inbox = inbox
        self.buf = b""

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            command, _, _, data = self.conn.next_packet(self.inbox)
            if command == WRTE:
                self.conn.send(OKAY, self.dev_id, self.host_id)
                self.buf += data
            elif command == CLSE:
                raise _Closed
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _record(self) -> tuple[bytes, int]:
        head = self._need(8)
        return head[:4], int(struct.unpack("<I", head[4:])[0])

    def _reply(self, data: bytes) -> None:
        self.conn._write(self.dev_id, self.host_id, data, self.inbox)

    def run(self) -> None:
        phone = self.phone = self.conn.phone
        try:
            while True:
                rid, n = self._record()
                phone.sync_requests.append(rid.decode("ascii", "replace"))
                if rid == b"QUIT":
                    break
                if rid == b"STAT":
                    path = posixpath.normpath(self._need(n).decode())
                    f = phone.files.get(path)
                    if f is not None:
                        st = (f.mode, len(f.data), f.mtime)
                    elif path in phone.dirs:
                        st = (0o040755, 4096, 0)
                    else:
                        st = (0, 0, 0)
                    self._reply(b"STAT" + struct.pack("<3I", *st))
                elif rid == b"SEND":
                    path, _, mode = self._need(n).decode().rpartition(",")
                    data = b""
                    while True:
                        rid, n = self._record()
                        if rid == b"DATA":
                            data += self._need(n)
                        elif rid == b"DONE":
                            break
                        else:
                            raise PhoneGone(f"unexpected {rid!r} in SEND")
                    path = posixpath.normpath(path)
                    if posixpath.dirname(path) not in phone.dirs:
                        msg = b"secure_mkdirs failed: No such file or directory"
                        self._reply(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                        continue
                    phone.files[path] = _File(data, int(mode), n)
                    phone.pushes.append(path)
                    self._reply(b"OKAY" + struct.pack("<I", 0))
                elif rid == b"RECV":
                    found = phone._read(self._need(n).decode())
                    if found is None:
                        msg = b"No such file or directory"
                        self._reply(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                        continue
                    for chunk in _chunks(found):
                        self._reply(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                    self._reply(b"DONE" + struct.pack("<I", 0))
                else:
                    raise PhoneGone(f"unknown sync record {rid!r}")
        except _Closed:
            pass
        self.conn.send(CLSE, self.dev_id, self.host_id)


class _Closed(Exception):
    pass


def _chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), CHUNK - 8):
        yield data[i:i + CHUNK - 8]
