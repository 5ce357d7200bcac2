"""Embedded AWS emulator for the demo, the tests and the benchmarks.

moto in server mode, extended where it falls short of the AWS behaviour runners relies
on. All knowledge of moto's internals stays inside this package; production code only
ever sees an endpoint URL.
"""

from runners.local.emulator import ACCOUNT_ID, REGION, Emulator, EmulatorError
from runners.local.faults import Call, Fault, FaultInjector
from runners.local.timeline import RunBehaviour

__all__ = [
    "ACCOUNT_ID",
    "REGION",
    "Call",
    "Emulator",
    "EmulatorError",
    "Fault",
    "FaultInjector",
    "RunBehaviour",
]
