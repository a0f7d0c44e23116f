"""Subprocess entry for the resume and multi-host tests: train the tiny model on synthetic data,
or with --digits DATA_DIR on the bundled `digits` dataset (8x8, through jaxvision.data, default
augmentation) prepared in DATA_DIR.

  python -m tests.training.run_fake WORKDIR [--parallel jit] [--steps 40] [--ckpt_every 5]
      [--sleep 0.0] [--digits DATA_DIR] [--mesh data=2,fsdp=4] [--vit]
      [--coordinator 127.0.0.1:PORT --num_processes 2 --process_id I]

XLA_FLAGS (device count) must be set by the caller. Prints 'FINISHED' at the end.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--parallel", default="jit")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--ckpt_every", type=int, default=5)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--coordinator", default=None)
    ap.add_argument("--num_processes", type=int, default=None)
    ap.add_argument("--process_id", type=int, default=None)
    ap.add_argument("--digits", default=None, help="data_dir with the bundled digits dataset")
    ap.add_argument("--mesh", default="", help="config.mesh sizes, e.g. data=2,fsdp=4")
    ap.add_argument("--vit", action="store_true",
                    help="the tiny ViT (fakes.TINY_VIT), trained with SGD + momentum (its attention "
                         "key bias has a zero gradient in exact arithmetic, whose rounding noise "
                         "Adam would scale up to the learning rate)")
    a = ap.parse_args()

    from jaxvision import cli
    from jaxvision.training import distributed

    cli.quiet_logging()  # as jaxvision.train: INFO on process 0, warnings on the others
    distributed.initialize(a.coordinator, a.num_processes, a.process_id, timeout_s=60)
    import jax

    cli.show_routine_logs(jax.process_index(), jax.process_count())

    from jaxvision.training import loop
    from tests.training import fakes

    fakes.register_tiny()
    if a.digits:
        from jaxvision import data

        build = data.build
        data_keys = {"data.name": "digits", "data.data_dir": a.digits,
                     "data.eval_split": "validation", "data.test_split": ""}
    else:
        build = fakes.make_build()
        data_keys = {}

    def slow_build(*args, **kw):
        pipe = build(*args, **kw)
        if not kw.get("train") or not a.sleep:
            return pipe

        class Slow:
            info = pipe.info

            def __iter__(self):
                for b in pipe:
                    time.sleep(a.sleep)
                    yield b

        return Slow()

    c = fakes.tiny_config(
        parallel=a.parallel, total_steps=a.steps, checkpoint_every_steps=a.ckpt_every,
        eval_every_steps=a.steps, keep_checkpoints=2,
        **{"optimizer.name": "adamw", "schedule.base_lr": 0.01, **data_keys,
           **({**fakes.TINY_VIT, "optimizer.name": "sgd", "schedule.base_lr": 0.1} if a.vit else {}),
           **{f"mesh.{k}": int(v) for k, v in (kv.split("=") for kv in a.mesh.split(",") if kv)}},
    )
    loop.train_and_evaluate(c, a.workdir, build_data=slow_build)
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
