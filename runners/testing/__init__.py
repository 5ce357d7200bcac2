"""Test support for runner authors and for the project's own tests: the engine with an
in-memory store and activity (``RunnerHarness``), and a whole worker on a background
thread (``BackgroundWorker``). Never shipped in a Lambda package."""

from runners.testing.harness import RunnerHarness
from runners.testing.memory import MemoryChannel, MemoryStore, Report

__all__ = ["MemoryChannel", "MemoryStore", "Report", "RunnerHarness"]
