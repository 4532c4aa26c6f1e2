"""Loopback stand-ins for what the bot talks to (Discord, the vendors), shared by tests/ and benchmarks/.

Outside tests/ so the benchmarks can use them without importing the test suite; not part of the
installed package.
"""
