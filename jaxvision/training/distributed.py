"""Multi-host start-up through ``jax.distributed``.

Each process runs the same command with its own ``--process_id``; process 0's address is the
coordinator. Without flags, ``jax.distributed.initialize()`` is called only where JAX can detect the
cluster itself (SLURM, Open MPI, Cloud TPU / GKE environment variables); otherwise the run is a
single process.
"""

from __future__ import annotations

import logging
import os

import jax

from jaxvision.training import rendezvous

log = logging.getLogger("jaxvision.train")

# Environment variables through which jax.distributed.initialize() auto-detects a cluster.
_AUTO_ENV = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES",
             "MEGASCALE_COORDINATOR_ADDRESS")


def _auto_detectable() -> bool:
    if "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return False
    if "OMPI_COMM_WORLD_SIZE" in os.environ and int(os.environ["OMPI_COMM_WORLD_SIZE"]) <= 1:
        return False
    return any(k in os.environ for k in _AUTO_ENV)


def will_initialize(argv) -> bool:
    """True when a command with ``argv`` will call ``jax.distributed.initialize`` (multi-host
    flags, or a cluster JAX detects): nothing may initialise JAX's backend before it does."""
    flags = ("--coordinator_address", "--num_processes", "--process_id")
    return any(str(a).startswith(flags) for a in argv) or _auto_detectable()


DEFAULT_JOIN_TIMEOUT_S = 120  # long enough for a scheduler to start every task of a job


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: float = DEFAULT_JOIN_TIMEOUT_S) -> bool:
    """Start jax.distributed if asked (flags) or detectable; returns True when multi-process.

    Must run before any JAX computation. On CPU, cross-process collectives use gloo. With explicit
    flags every process first answers a roll call (jaxvision.training.rendezvous) on
    ``HOST:PORT+1``: a process that cannot reach the coordinator, or a coordinator whose peers do
    not join, raises JoinTimeoutError within ``timeout_s`` seconds naming the address and the
    missing process ids. Raises ValueError for inconsistent flags.
    """
    given = [coordinator_address is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError(
            "Multi-host training needs all of --coordinator_address=HOST:PORT, --num_processes=N "
            "and --process_id=I (0..N-1), the same address and N on every process."
        )
    if all(given):
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id={process_id} must be in [0, {num_processes}).")
        if num_processes == 1:
            return False
        if timeout_s <= 0:
            raise ValueError(f"--join_timeout_s must be > 0 seconds, got {timeout_s}.")
        rendezvous.join(coordinator_address, num_processes, process_id, timeout_s)
        _cpu_collectives()
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=int(max(timeout_s, 1)),
        )
    elif _auto_detectable():
        _cpu_collectives()
        jax.distributed.initialize()
    else:
        return False
    log.info("jax.distributed: process %d of %d, %d local / %d global devices",
                jax.process_index(), jax.process_count(), jax.local_device_count(),
                jax.device_count())
    return jax.process_count() > 1


def _cpu_collectives() -> None:
    # CPU devices need an explicit cross-process collectives library; harmless for GPU/TPU.
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception as e:  # noqa: BLE001 - older/newer jax without the option
        log.info("could not select gloo CPU collectives: %s", e)
