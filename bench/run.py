"""Benchmarks: see the performance issue. Placeholder until it lands."""

print("bench: not yet")
