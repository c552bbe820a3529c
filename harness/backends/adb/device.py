"""A phone over adb (adb-shell): connecting with this computer's key, shell commands with
their exit status, pushing files only when they changed, reading thermal zones.

adb-shell is an optional dependency (``pip install edge-harness[adb]``) imported here only.
Every failure is an :class:`AdbError` with a message a person can act on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.backends.adb.telemetry import zone_celsius

REMOTE_ROOT = "/data/local/tmp/edge-harness"
# the exit status echoed after a command; a shell that does not expand $? echoes it as is
_RC = re.compile(r"__rc=(\d+|\$\?)\s*$")
_RCIN = re.compile(r"__rcin=(\d+|\$\?)\r?\n?")


def _status(echoed: str) -> int:
    """An echoed ``$?``: a shell that does not expand it says nothing of the command's exit
    status, and it is taken as success (the output, a runner's statistics, is judged by its
    content)."""
    return int(echoed) if echoed.isdigit() else 0
_UPTIME = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s+[0-9]+(?:\.[0-9]+)?\s*")


def _uptime(line: str) -> float | None:
    """The first figure of a ``/proc/uptime`` line, or None when ``line`` is not one."""
    m = _UPTIME.fullmatch(line)
    return None if m is None else float(m.group(1))


class AdbError(Exception):
    """The phone could not be reached or used; ``kind`` is unauthorized, no-device, gone,
    timeout or failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def adb_key_path() -> Path:
    """This computer's adb key, ``~/.android/adbkey`` ($HOME respected), created (mode 0600)
    when absent, with its ``.pub`` beside it, as the adb tool does."""
    from adb_shell.auth.keygen import keygen

    path = Path.home() / ".android" / "adbkey"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # created 0600 before the key is written into it: never readable by others
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        keygen(str(path))
        os.chmod(path, 0o600)
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Phone:
    """A connected phone. ``where`` names it in rows: HOST:PORT or the USB serial."""

    def __init__(self, device: Any, where: str) -> None:
        self.device = device
        self.where = where
        self.zones: list[str] = []
        self.policies: list[str] = []

    @classmethod
    def connect(cls, *, adb: str | None, serial: str | None, timeout_s: float) -> Phone:
        """Connect to ``adb`` (HOST:PORT) or the USB phone ``serial``; an AdbError says why
        not (no device, unauthorized key) within about ``timeout_s``."""
        try:
            from adb_shell.adb_device import AdbDevice
            from adb_shell.auth.sign_pythonrsa import PythonRSASigner
        except ImportError as exc:
            raise AdbError("failed", f"the adb backend needs adb-shell: pip install "
                                     f"'edge-harness[adb]' ({exc})") from None
        where = adb or serial or "?"
        if adb is not None:
            host, _, port = adb.rpartition(":")
            device: Any = AdbDevice(_tcp_transport(host, int(port)),
                                    default_transport_timeout_s=timeout_s)
        else:
            try:
                from adb_shell.adb_device import AdbDeviceUsb
                device = AdbDeviceUsb(serial=serial, default_transport_timeout_s=timeout_s)
            except Exception as exc:  # usb1 missing, or no such serial
                raise AdbError("no-device", f"no USB phone {serial!r}: {exc} (USB needs "
                                            f"pip install 'adb-shell[usb]', and `adb "
                                            f"kill-server` if an adb server holds the "
                                            f"phone)") from None
        signer = PythonRSASigner.FromRSAKeyPath(str(adb_key_path()))
        refused: list[bool] = []
        try:
            device.connect(rsa_keys=[signer], auth_timeout_s=timeout_s,
                           transport_timeout_s=timeout_s, read_timeout_s=timeout_s,
                           auth_callback=lambda _: refused.append(True))
        except Exception as exc:
            _close(device)
            if refused:
                raise AdbError("unauthorized", f"the phone at {where} did not accept this "
                               f"computer's key ({adb_key_path()}): unlock it, tap Allow on "
                               f"'Allow USB debugging?' and run again") from None
            if isinstance(exc, ConnectionRefusedError):
                raise AdbError("no-device", f"the phone at {where} refused the connection "
                               f"(nothing listens there: is `adb tcpip 5555` done, or did "
                               f"the phone go away or reboot?)") from None
            raise AdbError("no-device", f"no phone answered at {where} within {timeout_s:g} "
                           f"s ({type(exc).__name__}: {exc}); is USB debugging on and, for "
                           f"--adb, `adb tcpip 5555` done and the phone on this network?"
                           ) from None
        return cls(device, where)

    def close(self) -> None:
        _close(self.device)

    # ------------------------------------------------------------------ commands
    def sh(self, command: str, *, timeout_s: float = 30.0) -> tuple[str, int]:
        """Output (stdout and stderr mixed, as adb's ``shell:`` gives them) and exit
        status of ``command``: ``shell:`` has none, so it is echoed and parsed."""
        try:
            out = self.device.shell(f"{command}; echo __rc=$?", transport_timeout_s=timeout_s,
                                    read_timeout_s=timeout_s, timeout_s=timeout_s,
                                    decode=False)
        except Exception as exc:
            raise _classify(exc, self.where, f"running {command[:80]!r}") from None
        text = out.decode("utf-8", errors="replace") if isinstance(out, bytes) else str(out)
        m = _RC.search(text)
        if m is None:
            raise AdbError("gone", f"the phone at {self.where} ended the command without an "
                                   f"exit status (output: {text[-200:]!r})")
        return text[:m.start()], _status(m.group(1))

    def sh_timed(self, command: str, *, timeout_s: float = 30.0, then: str | None = None,
                 before: str | None = None
                 ) -> tuple[str, int, tuple[float, float] | None, str]:
        """:meth:`sh`, with the phone's uptime (s) read just before and just after
        ``command`` in the same shell: when it really ran on the phone's clock, whatever the
        delays of the connection (None when /proc/uptime could not be read); ``before`` runs
        first and must print nothing, ``then`` runs after it in the same shell. Returns the
        command's output, its status, the window and what ``then`` printed."""
        after = "" if then is None else f"; {then}"
        first = "" if before is None else f"{before}; "
        text, _ = self.sh(f"{first}cat /proc/uptime; {command}; echo __rcin=$?; cat /proc/uptime"
                          f"{after}", timeout_s=timeout_s)
        first, _, rest = text.partition("\n")
        start = _uptime(first)
        if start is None:
            rest = text
        at = rest.rfind("__rcin=")
        m = _RCIN.match(rest, at) if at >= 0 else None
        if m is None:
            raise AdbError("gone", f"the phone at {self.where} ended the command without an "
                                   f"exit status (output: {text[-200:]!r})")
        tail = rest[m.end():].strip()
        end_line, _, then_out = tail.partition("\n")
        end = _uptime(end_line)
        if end is None:       # no uptime after the run: all of it is then's
            then_out = tail
        window = None if start is None or end is None else (start, end)
        return rest[:at], _status(m.group(1)), window, then_out

    def check(self, command: str, *, timeout_s: float = 30.0) -> str:
        out, rc = self.sh(command, timeout_s=timeout_s)
        if rc != 0:
            raise AdbError("failed", f"{command[:120]!r} failed on the phone (exit {rc}): "
                                     f"{out.strip()[-300:]}")
        return out

    def getprop(self, name: str) -> str:
        return self.check(f"getprop {shlex.quote(name)}").strip()

    def push_if_changed(self, local: Path, remote: str, *, mode: int = 0o644,
                        sha256: str | None = None, timeout_s: float = 30.0) -> bool:
        """Push ``local`` to ``remote`` unless a file of the same sha256 is there; True when
        pushed. The check is the phone's ``sha256sum`` (absent or failing: pushed again), not
        sync's STAT: only SEND is needed of the device side's file service. ``timeout_s``
        bounds each exchange with the phone (adb-shell's timeouts are per packet), not the
        whole push: a large model takes as long as it takes, a phone gone silent is noticed
        in that time."""
        digest = sha256 or sha256_file(local)
        out, rc = self.sh(f"sha256sum {shlex.quote(remote)}", timeout_s=timeout_s)
        if rc == 0 and out.split()[:1] == [digest]:
            return False
        self.check(f"mkdir -p {shlex.quote(remote.rsplit('/', 1)[0])}")
        try:
            self.device.push(str(local), remote, st_mode=0o100000 | mode,
                             transport_timeout_s=timeout_s, read_timeout_s=timeout_s)
        except Exception as exc:
            raise _classify(exc, self.where, f"pushing {local.name}") from None
        return True

    # ------------------------------------------------------------------ telemetry
    def list_zones(self) -> None:
        out, _rc = self.sh("ls /sys/class/thermal")
        self.zones = sorted((z for z in out.split() if z.startswith("thermal_zone")),
                            key=lambda z: int(z[12:]) if z[12:].isdigit() else 0)[:64]

    def list_policies(self) -> None:
        """The CPU frequency policies (``policy0``, ``policy4``...: one per cluster)."""
        out, _rc = self.sh("ls /sys/devices/system/cpu/cpufreq")
        self.policies = sorted((p for p in out.split() if p.startswith("policy")
                                and p[6:].isdigit()), key=lambda p: int(p[6:]))[:16]

    def read_files(self, paths: Sequence[str]) -> dict[str, str]:
        """The first line of each file of ``paths`` that could be read (one command, of
        ``echo`` and ``cat`` only: it works on the plainest shell); the others are left out."""
        if not paths:
            return {}
        out, _ = self.sh("; ".join(f"echo __file; cat {shlex.quote(p)} && echo __read"
                                   for p in paths))
        found = {}
        out = out.replace("\r\n", "\n")     # a shell on a pty ends its lines so
        for path, block in zip(paths, out.split("__file\n")[1:], strict=False):
            value, sep, _ = block.partition("__read")
            lines = value.strip("\n").split("\n")
            if sep and len(lines) == 1 and lines[0].strip():
                found[path] = lines[0].strip()
        return found

    def thermal(self) -> dict[str, float]:
        """Temperature (°C) of each readable thermal zone, by its type (``cpu-0-0-0``...);
        zones SELinux hides are left out."""
        if not self.zones:
            return {}
        base = "/sys/class/thermal"
        cmd = "; ".join(f"echo __zone; cat {base}/{z}/type {base}/{z}/temp"
                        for z in self.zones)
        out, _ = self.sh(cmd)
        temps: dict[str, float] = {}
        for block in out.split("__zone")[1:]:
            lines = [ln.strip() for ln in block.strip().splitlines()]
            if len(lines) == 2 and re.fullmatch(r"-?\d+", lines[1]) and lines[0]:
                name, value = lines[0], int(lines[1])
                while name in temps:
                    name += "'"
                temps[name] = zone_celsius(value)
        return temps

    def battery(self) -> dict[str, str]:
        """Battery status, capacity (%), temperature (0.1 °C) and current (µA) as read."""
        names = ("status", "capacity", "temp", "current_now")
        base = "/sys/class/power_supply/battery"
        out, _ = self.sh("; ".join(f"echo __{n}; cat {base}/{n}" for n in names))
        found = {}
        for block in out.split("__")[1:]:
            key, _, value = block.strip().partition("\n")
            if key in names and value and "No such file" not in value \
                    and "denied" not in value:
                found[key] = value.strip()
        return found


def _tcp_transport(host: str, port: int) -> Any:
    """adb-shell's TCP transport, except that a connection the phone closed is an error at
    once: adb-shell reads an EOF as "no bytes yet" and would wait out its read timeout (30 s
    and more) for a phone that is gone."""
    from adb_shell.transport.tcp_transport import TcpTransport

    class Transport(TcpTransport):
        def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
            data: bytes = super().bulk_read(numbytes, transport_timeout_s)
            if not data and numbytes > 0:
                raise ConnectionResetError(f"{host}:{port} closed the connection")
            return data

    return Transport(host, port)


def _close(device: Any) -> None:
    with contextlib.suppress(Exception):
        device.close()


def _classify(exc: Exception, where: str, doing: str) -> AdbError:
    """An adb-shell or socket failure as an AdbError: a timeout, or the phone gone."""
    name = type(exc).__name__
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return AdbError("timeout", f"{doing}: no answer from the phone at {where} in time "
                                   f"({name}: {exc})")
    return AdbError("gone", f"{doing}: lost the phone at {where} ({name}: {exc})")
