"""Benchmarks of compiled training steps: fdl workloads, a PyTorch peer, machine peak.

`benchmarks/steps.py` is the command line; the pieces live here so tests can run
them on tiny workloads.
"""
