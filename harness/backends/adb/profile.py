"""The device profile of the phone on the cable: its ``ro.soc.model`` matched against the
profiles' ``adb_soc_model`` (``SM8650`` -> ``snapdragon8gen3``). The sweep asks this when the
adb backend is used without ``--device``; an unknown SoC is an InputError that says how to
choose the profile by hand."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.backends.base import BackendOptions
    from harness.profiles import DeviceProfile


def profile_for_soc(soc: str, profiles: Iterable[DeviceProfile]) -> str | None:
    """The name of the profile whose ``adb_soc_model`` is ``soc`` (case-insensitive), or
    None. Two profiles naming one SoC is ambiguous: None as well (the caller asks for
    --device)."""
    want = soc.strip().upper()
    found = sorted(p.name for p in profiles if p.adb_soc_model.strip().upper() == want)
    return found[0] if len(found) == 1 else None


def read_soc_model(options: BackendOptions) -> tuple[str, str]:
    """``getprop ro.soc.model`` of the phone ``options`` names, and where it is; an
    InputError when the phone cannot be asked."""
    from harness.backends.adb.device import AdbError, Phone

    try:
        phone = Phone.connect(adb=options.adb, serial=options.serial,
                              timeout_s=options.connect_timeout_s)
        try:
            return phone.getprop("ro.soc.model"), phone.where
        finally:
            phone.close()
    except AdbError as exc:
        raise InputError(f"could not read the phone's SoC (ro.soc.model) to choose its device "
                         f"profile: {exc}; give --device NAME to choose it yourself "
                         f"(see `harness devices`)", field="--device") from None


def phone_profile(options: BackendOptions) -> str:
    """The profile name of the phone ``options`` names, from its ``ro.soc.model``."""
    from harness.profiles import list_profiles, load_profile

    soc, where = read_soc_model(options)
    profiles = [load_profile(n) for n in list_profiles()]
    name = profile_for_soc(soc, profiles) if soc else None
    if name is None:
        known = ", ".join(f"{p.adb_soc_model} ({p.name})"
                          for p in sorted(profiles, key=lambda p: p.name))
        what = f"SoC {soc!r}" if soc else "no ro.soc.model (Android 12+ sets it)"
        raise InputError(f"the phone at {where} reports {what}, which no device profile "
                         f"names in adb_soc_model; give --device NAME to choose the profile "
                         f"yourself (`harness devices` lists them; known SoCs: {known})",
                         field="--device")
    return name
