"""What the benchmarks share: process metering, servers, clients and inputs, the result table.

The scripts in bench/ run with bench/ first on sys.path, so they import this as `_common`.
"""
