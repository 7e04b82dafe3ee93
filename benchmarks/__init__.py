"""Benchmarks and benchmark fixtures for s3torch-async (not part of the package)."""
