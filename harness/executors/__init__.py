"""Executors run a sweep's tasks: worker tasks (build, inputs, describe) and timed cases.

``local`` (the default) runs everything on this machine, timed cases one at a time so they
never share a CPU. A distributed executor (Ray) registers here and runs the same typed tasks
elsewhere; the sweep does not change.
"""

from harness.executors.base import EXECUTORS, Executor, make_executor

__all__ = ["EXECUTORS", "Executor", "make_executor"]
