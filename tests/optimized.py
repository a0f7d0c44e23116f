"""Running one program at XLA's default optimization level inside the tests' -O0 processes.

``tests/conftest.py`` compiles every program with LLVM at -O0 (the suite is bound by compiling).
A test that runs one program many times (a toy model trained for 150 steps in one loop) is bound
by running instead: at -O0 the toy training of ``tests/robustness/toy.py`` takes 46 s, at the
default level 5 s (compiling included). The level changes the machine code's speed only.
"""

import jax

# XLA's own default (DebugOptions in xla/debug_options_flags.cc), which a user's process runs at.
DEFAULT_LEVEL = {"xla_backend_optimization_level": 3}


def run_optimized(fn, *args):
    """``jax.jit(fn)(*args)``, compiled at XLA's default optimization level whatever XLA_FLAGS
    says."""
    return jax.jit(fn).lower(*args).compile(compiler_options=DEFAULT_LEVEL)(*args)
