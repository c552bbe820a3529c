"""Benchmarking and device emulation for compressed on-device ML models.

Importing this package is cheap on purpose: torch and onnxruntime are imported only by the
modules that need them, when they need them.
"""

__version__ = "0.1.0"
