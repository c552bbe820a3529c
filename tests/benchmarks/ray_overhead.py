"""Ray's own cost per task on a local instance, for docs/cluster.md.

Run: ``python tests/benchmarks/ray_overhead.py`` (needs the ray extra).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
import ray

t = time.monotonic()
ray.init(num_cpus=2, resources={"harness_timing": 1}, object_store_memory=128 * 1024**2,
         include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
print(f"local instance start: {time.monotonic() - t:.2f} s")


@ray.remote(num_cpus=1)
def noop(x: int) -> dict[str, int]:
    return {"outcome": x}


ray.get([noop.remote(0) for _ in range(4)])  # warm the workers
n = 200
t = time.monotonic()
for i in range(n):
    ray.get(noop.remote(i))
print(f"sequential round trip: {(time.monotonic() - t) / n * 1e3:.2f} ms per task")
t = time.monotonic()
ray.get([noop.remote(i) for i in range(n)])
print(f"batched: {(time.monotonic() - t) / n * 1e3:.2f} ms per task")
t = time.monotonic()
for _ in range(5):
    subprocess.run([sys.executable, "-c", "import harness.worker"], check=True)
print(f"for scale, an isolated worker process start (import harness.worker): "
      f"{(time.monotonic() - t) / 5 * 1e3:.0f} ms")
t = time.monotonic()
ray.shutdown()
print(f"shutdown: {time.monotonic() - t:.2f} s")
