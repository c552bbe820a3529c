"""Phones as Ray resources: a sweep's device cases (``--backend adb``) on a lab of phones.

Each host with phones joins the cluster with one custom resource per phone and one per SoC::

    ray start --address HEAD:6379 --resources '{"phone:R5CT1234": 1, "soc:SM8650": 1}'

The part after ``phone:`` says how that host reaches the phone: a USB serial (``R5CT1234``)
or, when it has the form ``HOST:PORT`` (``phone:192.168.1.20:5555``, which is also the serial
adb gives a phone after ``adb connect``), an address over TCP. Nothing else is configured:
the resource names are the lab's inventory.

For a sweep, :func:`measure_on_phones` starts one :class:`PhoneActor` per phone on a node
that declares a wanted SoC (``soc:`` + the profile's ``adb_soc_model``). The actor asks for
the phone's resource (1 of 1), so Ray places it on that phone's host and no other actor (of
this sweep or another) can hold the phone while it lives: the resource is the exclusive
lease. The actor opens the device backend there (through the backend seam, with ``--adb`` or
``--serial`` filled in from the resource name) and asks the phone its ``ro.soc.model``: the
phone serves the device class of its real SoC, whatever its node declared, so no case ever
moves to a phone of another SoC.

Cases of one device profile form one queue; an idle phone of that SoC takes the next one.
Before each case the actor checks that the phone answers (a fresh connection and ``getprop``);
the backend's own cooldown gate then waits for the SoC to cool. The backend's connection is
released after each case, so the next check can connect (a USB phone takes one connection at
a time). Every remote call has a deadline (``ray.wait`` with a timeout, then ``ray.kill``):

* a phone that fails the check before its case starts is retired and the case goes back to
  the queue, for another phone of the same SoC;
* a phone that stops answering during a case (the case failed and the check after it fails),
  an actor that dies (its node died), or a call past its deadline: that case is a
  ``device_lost`` row and the phone is retired for the rest of the sweep;
* cases left when no phone of their SoC remains are ``device_lost`` rows whose reason starts
  ``not run:`` (``harness bench --resume RUN --retry device_lost`` runs them later).

Every job yields exactly one measurement; an answer that comes after its case was settled is
dropped, never reported twice.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import ray
import ray.exceptions

from harness.backends.base import (
    Backend,
    BackendContext,
    BackendOptions,
    CaseJob,
    make_backend,
    measure_guarded,
    measurement_for,
    now_iso,
)
from harness.core.measurement import Measured, Measurement

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile

PHONE_PREFIX = "phone:"
SOC_PREFIX = "soc:"
# starting an actor (a Ray worker process and its imports) and the phone's first check; a
# phone whose resource another job holds never starts: it is left out after this long
HELLO_S = 60.0
# on top of a case's own timeout and the longest cooldown: connecting (twice, with the checks)
# and pushing the artifact and the runner
CASE_GRACE_S = 120.0
# the check before and after a case: one connection and one getprop
CHECK_TIMEOUT_S = 10.0
# a runner timeout of 0 means the backend's default (harness.backends.adb: 600 s)
DEFAULT_CASE_TIMEOUT_S = 600.0
# longest single ray.wait, so deadlines are looked at even when nothing finishes
POLL_S = 5.0


@dataclass(frozen=True)
class PhoneAddress:
    """How a host reaches the phone its ``phone:`` resource names."""

    resource: str            # phone:R5CT1234 or phone:192.168.1.20:5555
    adb: str | None          # HOST:PORT over TCP
    serial: str | None       # a USB serial

    @classmethod
    def parse(cls, resource: str) -> PhoneAddress:
        """The address in a ``phone:`` resource name; ValueError when it is not one."""
        name = resource.removeprefix(PHONE_PREFIX)
        if not resource.startswith(PHONE_PREFIX) or not name:
            raise ValueError(f"expected a resource phone:SERIAL or phone:HOST:PORT, got "
                             f"{resource!r}")
        host, _, port = name.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return cls(resource, adb=name, serial=None)
        return cls(resource, adb=None, serial=name)

    def options(self, base: BackendOptions) -> BackendOptions:
        """The backend's options aimed at this phone."""
        return replace(base, adb=self.adb, serial=self.serial)


@dataclass(frozen=True)
class PhoneSlot:
    """A phone the cluster declares: its resource and its node's."""

    address: PhoneAddress
    node_id: str
    hostname: str
    socs: frozenset[str]     # the soc:* resources of its node, upper case


def phones_in_cluster() -> list[PhoneSlot]:
    """Every phone resource of the live nodes, with the SoCs its node declares."""
    slots = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources") or {}
        socs = frozenset(r.removeprefix(SOC_PREFIX).upper() for r in resources
                         if r.startswith(SOC_PREFIX))
        for r in sorted(resources):
            if r.startswith(PHONE_PREFIX):
                with contextlib.suppress(ValueError):
                    slots.append(PhoneSlot(PhoneAddress.parse(r), node_id=node["NodeID"],
                                           hostname=node.get("NodeManagerHostname", "?"),
                                           socs=socs))
    return slots


def node_info() -> dict[str, str]:
    """The node this Ray task or actor runs on."""
    import socket

    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "hostname": socket.gethostname(),
            "ip": ray.util.get_node_ip_address()}


class PhoneActor:
    """One phone, on the host it is plugged into, for the length of a sweep.

    Created with the phone's resource (1 of 1) so it holds the phone exclusively; measures one
    case at a time (an actor runs one call at a time)."""

    def __init__(self, address: PhoneAddress, options: BackendOptions) -> None:
        self.address = address
        self.options = address.options(options)
        self.backends: dict[str, Backend] = {}    # by profile name: each its own idle temp
        self.node = node_info()

    def _check(self) -> tuple[str | None, str, str]:
        """(None, SoC, where) when the phone answers a new connection and ``getprop``, else
        (why not, "", "")."""
        from harness.backends.adb.device import AdbError, Phone

        o = self.options
        try:
            phone = Phone.connect(adb=o.adb, serial=o.serial,
                                  timeout_s=min(o.connect_timeout_s, CHECK_TIMEOUT_S))
            try:
                return None, phone.getprop("ro.soc.model").strip().upper(), phone.where
            finally:
                phone.close()
        except AdbError as exc:
            return str(exc), "", ""
        except Exception as exc:  # the check itself must not kill the actor
            return f"{type(exc).__name__}: {exc}", "", ""

    def hello(self) -> dict[str, Any]:
        """The phone's SoC and this node, or why the phone does not answer."""
        why, soc, where = self._check()
        if why is not None:
            # two actors of one host may race to create ~/.android/adbkey the first time
            time.sleep(1.0)
            why, soc, where = self._check()
        return {"error": why, "soc": soc, "where": where, "node": self.node}

    def measure(self, backend: str, profile: DeviceProfile, job: CaseJob) -> dict[str, Any]:
        """Check the phone, measure ``job`` (the backend waits for the SoC to cool first),
        and check again after a failure: was it the case, or the phone?"""
        why, _, _ = self._check()
        if why is not None:
            return {"started": False, "lost": why, "node": self.node}
        opened = self.backends.get(profile.name)
        if opened is None:
            opened = self.backends[profile.name] = make_backend(
                backend, profile, BackendContext(options=self.options))
        try:
            m = measure_guarded(opened, job)
        finally:
            # releases the connection (the backend connects again for the next case) and keeps
            # the backend itself, which remembers the phone's idle temperature
            opened.close()
        lost = None if m.status == "ok" else self._check()[0]
        return {"started": True, "row": m.to_row(), "lost": lost, "node": self.node}

    def close(self) -> None:
        for b in self.backends.values():
            b.close()


_PhoneActor = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(PhoneActor)


@dataclass
class _Phone:
    """A leased phone as the driver sees it (mutable: busy, retired)."""

    slot: PhoneSlot
    actor: Any
    soc: str = ""
    where: str = ""
    node: Mapping[str, str] | None = None
    busy: bool = False
    retired: str | None = None     # why it no longer takes cases


def case_deadline_s(job: CaseJob, options: BackendOptions) -> float:
    """How long the driver waits for one case on a phone: the runner's timeout, the longest
    cooldown, two checks and connecting, and a grace for pushes."""
    timeout = job.measure.timeout_s if job.measure and job.measure.timeout_s > 0 \
        else DEFAULT_CASE_TIMEOUT_S
    return (timeout + options.cooldown_max_s + 2 * CHECK_TIMEOUT_S
            + 2 * options.connect_timeout_s + CASE_GRACE_S)


def measure_on_phones(jobs: Sequence[CaseJob], backends: Mapping[Any, Backend], *,
                      on_start: Callable[[CaseJob], None] | None = None
                      ) -> Iterator[tuple[CaseJob, Measurement]]:
    """Measure device cases on the cluster's phones; yield each case's measurement once."""
    if not jobs:
        return
    profiles: dict[str, DeviceProfile] = {}
    options = BackendOptions()
    for job in jobs:
        b = backends[(job.case.backend, job.case.device)]
        profile = getattr(b, "profile", None)
        if profile is None:
            raise ValueError(f"case {job.case.case_id}: its backend has no device profile")
        profiles[profile.name] = profile
        options = getattr(b, "options", None) or options
    soc_of = {name: p.adb_soc_model.strip().upper() for name, p in profiles.items()}
    queues: dict[str, deque[CaseJob]] = {soc: deque() for soc in soc_of.values()}
    for job in jobs:
        queues[soc_of[str(job.case.device)]].append(job)
    phones = _lease_phones(set(queues), options)
    yield from _dispatch(queues, phones, profiles, options, on_start)


def _lease_phones(socs: set[str], options: BackendOptions) -> list[_Phone]:
    """An actor on every phone whose node declares one of ``socs``, each asked its SoC; the
    ones that do not answer in time are killed (their resource freed) and left out."""
    phones = [_Phone(slot, _PhoneActor.options(resources={slot.address.resource: 1})
                     .remote(slot.address, options))
              for slot in phones_in_cluster() if slot.socs & socs]
    pending = {p.actor.hello.remote(): p for p in phones}
    deadline = time.monotonic() + HELLO_S + 2 * options.connect_timeout_s
    while pending and time.monotonic() < deadline:
        ready, _ = ray.wait(list(pending), num_returns=1,
                            timeout=max(0.0, deadline - time.monotonic()))
        for ref in ready:
            p = pending.pop(ref)
            try:
                answer = ray.get(ref, timeout=CHECK_TIMEOUT_S)
            except ray.exceptions.RayError as exc:
                _retire(p, f"its actor failed to start ({type(exc).__name__})")
                continue
            p.node, p.soc, p.where = answer["node"], answer["soc"], answer["where"]
            if answer["error"]:
                _retire(p, f"it does not answer: {answer['error']}")
            elif not p.soc and len(p.slot.socs) == 1:
                p.soc = next(iter(p.slot.socs))   # no ro.soc.model (before Android 12)
            if p.retired is None and p.soc not in socs:
                _retire(p, f"its SoC is {p.soc or 'unknown'}, not one this sweep wants")
    for p in pending.values():
        _retire(p, f"its actor did not start within {HELLO_S:g} s (is the phone's resource "
                   "held by another job?)")
    return phones


def _retire(phone: _Phone, why: str) -> None:
    """Take ``phone`` out of the sweep and free its resource."""
    phone.retired, phone.busy = why, False
    with contextlib.suppress(Exception):
        ray.kill(phone.actor, no_restart=True)


def _dispatch(queues: dict[str, deque[CaseJob]], phones: list[_Phone],
              profiles: Mapping[str, DeviceProfile], options: BackendOptions,
              on_start: Callable[[CaseJob], None] | None
              ) -> Iterator[tuple[CaseJob, Measurement]]:
    """Give each idle phone the next case of its SoC until every case has a row."""
    # ref -> (phone, job, seconds allowed, monotonic start, wall-clock start)
    running: dict[Any, tuple[_Phone, CaseJob, float, float, str]] = {}
    announced: set[str] = set()
    settled: set[str] = set()

    def lost(job: CaseJob, phone: _Phone | None, reason: str, started: float,
             at: str) -> Measurement:
        measured = None if phone is None else Measured(
            where=phone.where or phone.slot.address.resource.removeprefix(PHONE_PREFIX),
            extra={"phone": phone.slot.address.resource,
                   "ray_node": dict(phone.node or {"node_id": phone.slot.node_id,
                                                   "hostname": phone.slot.hostname})})
        return measurement_for(job, backend=job.case.backend, status="device_lost",
                               reason=reason, started=started, started_at=at,
                               measured=measured)

    def settle(job: CaseJob, m: Measurement) -> Iterator[tuple[CaseJob, Measurement]]:
        # one row per case, whatever arrives late
        if job.case.case_id not in settled:
            settled.add(job.case.case_id)
            yield job, m

    while any(queues.values()) or running:
        for soc, queue in queues.items():
            for phone in phones:
                if not queue:
                    break
                if phone.soc != soc or phone.busy or phone.retired:
                    continue
                job = queue.popleft()
                if on_start and job.case.case_id not in announced:
                    announced.add(job.case.case_id)
                    on_start(job)
                phone.busy = True
                profile = profiles[str(job.case.device)]
                ref = phone.actor.measure.remote(job.case.backend, profile, job)
                t0 = time.monotonic()
                running[ref] = (phone, job, case_deadline_s(job, options), t0, now_iso())
            alive = [p for p in phones if p.soc == soc and not p.retired]
            if queue and not alive:
                # nobody left to run these: say so now rather than wait for nothing
                why = _no_phone_reason(soc, phones)
                while queue:
                    job = queue.popleft()
                    t0, at = time.monotonic(), now_iso()
                    yield from settle(job, lost(job, None, why, t0, at))
        if not running:
            continue
        soonest = min(t0 + allowed for _, _, allowed, t0, _ in running.values())
        ready, _ = ray.wait(list(running), num_returns=1,
                            timeout=max(0.0, min(soonest - time.monotonic(), POLL_S)))
        for ref in ready:
            phone, job, _, t0, at = running.pop(ref)
            phone.busy = False
            name = phone.slot.address.resource
            try:
                answer = ray.get(ref, timeout=CHECK_TIMEOUT_S)
            except ray.exceptions.RayError as exc:
                why = _actor_failure(exc)
                _retire(phone, why)
                yield from settle(job, lost(job, phone, f"device lost: {name} on "
                                                        f"{phone.slot.hostname}: {why}", t0, at))
                continue
            if phone.node is None or answer.get("node"):
                phone.node = answer.get("node")
            if not answer["started"]:
                _retire(phone, f"it failed the check before a case: {answer['lost']}")
                queues[phone.soc].appendleft(job)     # never started: another phone runs it
                continue
            m = _placed(Measurement.from_row(answer["row"]), phone)
            if answer["lost"]:
                _retire(phone, f"it stopped answering during a case: {answer['lost']}")
                m = replace(m, status="device_lost",
                            reason=f"device lost: {name} stopped answering during the case "
                                   f"({answer['lost']}); the backend said: {m.reason}")
            yield from settle(job, m)
        now = time.monotonic()
        for ref, (phone, job, allowed, t0, at) in list(running.items()):
            if t0 + allowed <= now:
                del running[ref]
                _retire(phone, f"no answer within {allowed:g} s")
                yield from settle(job, lost(job, phone, f"device lost: no answer from "
                                                        f"{phone.slot.address.resource} within "
                                                        f"{allowed:g} s (the case's timeout, "
                                                        f"cooldown and grace)", t0, at))
    for phone in phones:
        if not phone.retired:
            with contextlib.suppress(Exception):
                ray.get(phone.actor.close.remote(), timeout=CHECK_TIMEOUT_S)
            _retire(phone, "the sweep is over")


def _placed(m: Measurement, phone: _Phone) -> Measurement:
    """``m`` with the phone and the node that measured it."""
    node = dict(phone.node or {})
    measured = m.measured or Measured(where=phone.where or phone.slot.address.resource)
    return replace(m, provenance=replace(m.provenance, host=node.get("hostname",
                                                                     phone.slot.hostname)),
                   measured=replace(measured, extra={**(measured.extra or {}),
                                                     "phone": phone.slot.address.resource,
                                                     "ray_node": node}))


def _actor_failure(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.ActorUnavailableError):
        what = "its actor died (the node went away, or the actor's process)"
    else:
        what = "the call failed"
    return f"{what}: {type(exc).__name__}{': ' + first[:200] if first else ''}"


def _no_phone_reason(soc: str, phones: Sequence[_Phone]) -> str:
    # the phones of that SoC, and those whose node declared it (a phone of another SoC says so)
    gone = [f"{p.slot.address.resource} ({p.retired})" for p in phones
            if p.retired and (p.soc == soc or soc in p.slot.socs)]
    if gone:
        return f"not run: no phone with SoC {soc} is left: " + "; ".join(gone)
    return (f"not run: the Ray cluster has no phone with SoC {soc}: start its host with `ray "
            f"start --address HEAD:PORT --resources "
            f"'{{\"phone:SERIAL\": 1, \"soc:{soc}\": 1}}'` (see docs/cluster.md)")
