"""Executors run a sweep's tasks: worker tasks (build, inputs, describe) and timed cases.

``local`` (the default) runs everything on this machine, timed cases one at a time so they
never share a CPU. ``ray`` (:mod:`harness.executors.ray`, the ``ray`` extra) runs the same
typed tasks on the nodes of a Ray cluster; the sweep does not change.
"""

from harness.executors.base import EXECUTORS, Executor, ExecutorOptions, make_executor

__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "make_executor"]
