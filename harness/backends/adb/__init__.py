"""The ``adb`` backend: cases measured on a real Android phone (see docs/adb.md)."""

from harness.backends.adb.backend import AdbBackend

__all__ = ["AdbBackend"]
