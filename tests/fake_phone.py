"""A loopback fake Android phone that speaks the real ADB wire protocol over TCP (test code).

It answers an ADB client (adb-shell) on 127.0.0.1 the way adbd does: the CNXN/AUTH handshake
with an RSA token, streams opened with OPEN and ended with CLSE, WRTE packets each
acknowledged with OKAY, 24-byte headers with the payload's byte-sum checksum and
``magic = command ^ 0xFFFFFFFF``. Two services exist:

* ``shell:<cmd>``: a tiny dispatcher, never a real shell: ``;`` and ``&&`` lists of getprop,
  cat, chmod, ls, rm, mkdir -p, echo (``$?`` expanded), sha256sum, true, and running a pushed
  executable, which acts as ONNX Runtime's ``onnxruntime_perf_test`` (its 1.17 output format);
* ``sync:``: STAT, SEND (DATA.../DONE -> OKAY), RECV and QUIT, enough for push, pull and stat.

The phone has an Android-like state: properties (``ro.soc.model`` SM8650...), files under
``/data/local/tmp``, thermal zones that warm while the runner runs and cool after, battery
files. Knobs: ``run_heat_mc`` and ``cool_tau_s`` (how hot a run makes it, how fast it cools);
for fault tests ``accepted_keys`` (None: any key; a list of public keys: only
those; [] none: the "unauthorized" phone), ``runner_mode`` (ok, crash, hang, garbage),
``vanish_after_runs`` (the phone goes away after that many runner runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import posixpath
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
    files: dict[str, _File] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {"/", "/data", "/data/local",
                                                    "/data/local/tmp"})
    commands: list[str] = field(default_factory=list)    # every shell command received
    executed: list[str] = field(default_factory=list)    # the name of every command run
    runs: list[list[str]] = field(default_factory=list)  # argv of each runner run
    pushes: list[str] = field(default_factory=list)      # device paths pushed
    auth_attempts: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._heat_mc = 0.0
        self._heat_at = time.monotonic()
        self._zones = [("cpu-0-0-0", 36000), ("cpu-1-0-0", 37000), ("gpuss-0", 34000),
                       ("battery", 30000)]
        for i, (name, _) in enumerate(self._zones):
            self._put_dir(f"/sys/class/thermal/thermal_zone{i}")
            self.files[f"/sys/class/thermal/thermal_zone{i}/type"] = _File(
                (name + "\n").encode())
        battery = {"capacity": "87", "status": "Charging", "current_now": "350000",
                   "voltage_now": "4213000", "temp": "298", "charge_counter": "3900000"}
        self._put_dir("/sys/class/power_supply/battery")
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

    def _read(self, path: str) -> bytes | None:
        path = posixpath.normpath(path)
        if path.startswith("/sys/class/thermal/thermal_zone") and path.endswith("/temp"):
            i = int(path.split("thermal_zone")[1].split("/")[0])
            if i < len(self._zones):
                return f"{self.zone_temp_mc(i)}\n".encode()
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
            elif tok in ("|", "&", "&&&"):
                return out + b"/system/bin/sh: pipes are not faked\n", 2
            else:
                argv.append(tok)
        return out, rc

    def _run(self, argv: list[str], last_rc: int) -> tuple[bytes, int]:
        name, args = argv[0], argv[1:]
        self.executed.append(name)
        if name == "echo":
            return (" ".join(a.replace("$?", str(last_rc)) for a in args) + "\n").encode(), 0
        if name == "true":
            return b"", 0
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
            for p in (posixpath.normpath(a) for a in args if not a.startswith("-")):
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
            return f"/system/bin/sh: {name}: inaccessible or not found\n".encode(), 127
        if not f.mode & 0o111:
            return f"/system/bin/sh: {name}: can't execute: Permission denied\n".encode(), 126
        return self._perf_test(argv)

    # ------------------------------------------------------------------ the runner
    def _perf_test(self, argv: list[str]) -> tuple[bytes, int]:
        """``onnxruntime_perf_test [options] model_path``, as ONNX Runtime 1.17 prints it;
        with ``vanish_after_runs`` N, run N+1 finds the cable pulled."""
        if self.vanish_after_runs is not None and len(self.runs) >= self.vanish_after_runs:
            self.close()
            raise PhoneGone("cable pulled")
        self.runs.append(argv)
        return self._perf_test_output(argv)

    def _perf_test_output(self, argv: list[str]) -> tuple[bytes, int]:
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
        self._heat(self.run_heat_mc + 40.0 * n)
        warm = 1.0 + max(0.0, self.zone_temp_mc(0) - 36000) / 100000.0
        lat = [(self.base_latency_ms + size_mb) * warm * (1.0 + 0.05 * ((i * 7) % 11) / 10)
               for i in range(n)]
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


def _verify(signature: bytes, token: bytes, key: Any) -> bool:
    """PKCS#1 v1.5 over ``token`` taken as a SHA-1 digest, checked with an rsa.PublicKey."""
    k = (key.n.bit_length() + 7) // 8
    m = pow(int.from_bytes(signature, "big"), key.e, key.n).to_bytes(k, "big")
    return m.endswith(b"\x00" + _SHA1_PREFIX + token) and m.startswith(b"\x00\x01\xff")


class _Connection:
    """One client connection: the handshake, then streams served one at a time (adb-shell
    runs one command at a time)."""

    def __init__(self, phone: FakeAndroid, sock: socket.socket) -> None:
        self.phone, self.sock = phone, sock
        self.next_id = 100

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
        self.sock.sendall(pack(command, arg0, arg1, data))

    def run(self) -> None:
        self._handshake()
        while True:
            command, arg0, _, data = self.recv()
            if command == OPEN:
                self._open(arg0, data.rstrip(b"\0").decode())
            # a CLSE or OKAY for a stream already closed is ignored, as adbd does

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

    def _open(self, host_id: int, service: str) -> None:
        self.next_id += 1
        dev_id = self.next_id
        if service.startswith("shell:"):
            self.send(OKAY, dev_id, host_id)
            out, _ = self.phone.shell(service[len("shell:"):])
            for i in range(0, len(out), CHUNK):
                self._write(dev_id, host_id, out[i:i + CHUNK])
            self.send(CLSE, dev_id, host_id)
        elif service == "sync:":
            self.send(OKAY, dev_id, host_id)
            _Sync(self, dev_id, host_id).run()
        else:
            self.send(CLSE, 0, host_id)

    def _write(self, dev_id: int, host_id: int, data: bytes) -> None:
        """WRTE one packet and wait for its OKAY."""
        self.send(WRTE, dev_id, host_id, data)
        while True:
            command, *_ = self.recv()
            if command == OKAY:
                return
            if command == CLSE:
                raise PhoneGone("stream closed by the host")


class _Sync:
    """The ``sync:`` service: records of a 4-byte id and a u32, reassembled across WRTEs."""

    def __init__(self, conn: _Connection, dev_id: int, host_id: int) -> None:
        self.conn, self.dev_id, self.host_id = conn, dev_id, host_id
        self.buf = b""

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            command, _, _, data = self.conn.recv()
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
        self.conn._write(self.dev_id, self.host_id, data)

    def run(self) -> None:
        phone = self.phone = self.conn.phone
        try:
            while True:
                rid, n = self._record()
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
