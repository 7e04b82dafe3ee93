"""Client implementations: one module per client family, each function prepares one variant.

A function ``f(job, **options)`` does everything that should not be timed (imports, building
the client and its configuration, a warm-up request where the API exposes the client, the
payload to write) and returns the zero-argument callable that the worker times.
"""
