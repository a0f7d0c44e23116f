"""Several training steps per dispatch: ``lax.scan`` over a chunk of steps.

A tiny model's step (LeNet-5 at batch 128: ~0.1 ms of arithmetic per example) is shorter than
Python's per-step work (fetching a batch, dispatching, bookkeeping). With the data on the device
(``jaxvision.training.device_data``) a chunk of k steps is one compiled program: the batches are
gathered and augmented inside it and the train state never leaves the device.

Each step of the chunk is the same pure ``train_step(state, batch)`` the per-step path runs, fed
the same batch ``batch_fn(arrays, state.step)``, so a chunk of k steps gives what k single steps
give up to float rounding (XLA compiles the loop body as another program, whose fusions may
round differently: tested to 1e-5 over a few steps; over a whole run the parameters drift apart
as any two float programs do), and a run resumed at any chunk boundary ends bit for bit where
the uninterrupted run with the same chunking does.

Measured on the shared 2-core CPU (jaxvision 0.1, JAX 0.10.2, LeNet-5, batch 128): XLA:CPU runs
the step inside a while loop 4-5x slower than the same step as its own program (540 vs 114 ms
under load; 160 ms fully unrolled), so on the CPU one step per dispatch (``steps_per_dispatch=1``,
the default) is fastest: the device-held data already removes tf.data and the host copy, and
dispatch is asynchronous. Chunks pay off where the per-step launch cost dominates (GPU, TPU).
"""

from __future__ import annotations

from collections.abc import Callable

import jax


def make_multi_step(train_step: Callable, batch_fn: Callable, *, replicated=None,
                    data_sharding=None) -> Callable:
    """Returns ``run(state, arrays, num_steps) -> (state, metrics)``, compiled once per
    ``num_steps`` (static); the state is donated.

    train_step: ``(state, batch) -> (state, metrics)`` (jaxvision.training.steps, unjitted).
    batch_fn: ``(arrays, step) -> batch`` (jaxvision.training.device_data.make_batch_fn).
    replicated / data_sharding: the mesh's NamedShardings (state and data replicated; each batch
      split over the 'data' axis); None for a single device.
    metrics: the step's metrics stacked over the chunk, each float32 (num_steps,).
    """

    def one(s, arrays):
        batch = batch_fn(arrays, s.step)
        if data_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, data_sharding)
        return train_step(s, batch)

    def run(state, arrays, num_steps):
        if num_steps == 1:  # no loop at all (see the module note on XLA:CPU while loops)
            state, metrics = one(state, arrays)
            return state, jax.tree.map(lambda m: m[None], metrics)
        return jax.lax.scan(lambda s, _: one(s, arrays), state, None, length=num_steps)

    if replicated is None:
        return jax.jit(run, static_argnums=2, donate_argnums=0)
    return jax.jit(run, static_argnums=2, donate_argnums=0,
                   in_shardings=(replicated, replicated), out_shardings=(replicated, replicated))


def make_multi_eval(eval_step: Callable, merge: Callable, *, batch_size: int, replicated=None,
                    data_sharding=None) -> Callable:
    """Returns ``evaluate(state, arrays) -> metric sums`` over a whole device split in one
    dispatch (``arrays`` padded to a multiple of ``batch_size``; padding has mask False).

    eval_step: ``(state, batch) -> sums``; merge: ``(sums, sums) -> sums``.
    """

    def evaluate(state, arrays):
        n = arrays["label"].shape[0]
        batches = jax.tree.map(
            lambda x: x.reshape(n // batch_size, batch_size, *x.shape[1:]), arrays)

        def body(total, batch):
            if data_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, data_sharding)
            return merge(total, eval_step(state, batch)), None

        first = eval_step(state, jax.tree.map(lambda x: x[0], batches))
        rest = jax.tree.map(lambda x: x[1:], batches)
        total, _ = jax.lax.scan(body, first, rest)
        return total

    if replicated is None:
        return jax.jit(evaluate)
    return jax.jit(evaluate, in_shardings=(replicated, replicated), out_shardings=replicated)
