"""Fixtures for the device tests: a socat pseudo-terminal pair (RTU and RAPI over a "cable")."""

from tests.devices.support import socat_pair

__all__ = ["socat_pair"]
