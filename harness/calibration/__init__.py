"""What the emulator is calibrated on: published on-device latencies and the reference models.

* :mod:`harness.calibration.published` reads ``published_latency.csv`` and ``device_specs.csv``
  (``$HARNESS_CALIBRATION_DIR``, else the packaged copy in ``harness/calibration/data/``) and
  turns the trustworthy rows into one :class:`~harness.calibration.published.Target` per model,
  device profile, runtime and precision.
* :mod:`harness.calibration.refmodels` builds the architectures those rows measure as ONNX files
  (random weights: timing does not depend on them), cached by recipe and torch version.

Importing this package imports neither torch nor pandas; the submodules import them lazily.
"""
