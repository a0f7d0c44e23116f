"""jaxvision benchmarks: throughput, compile time, memory, MFU, scaling and peers.

Every script is a module run with ``python -m benchmarks.<name>``; see ``benchmarks/README.md``.
Scripts import jax lazily, after they have set ``XLA_FLAGS`` from their command line, because XLA
reads its flags once, when the backend starts.
"""
