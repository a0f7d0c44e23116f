"""The training configuration: every key a recipe can set, with its default.

Recipes (``configs/<name>.py``) start from :func:`base_config`, change what they need, add model
overrides under ``config.model`` (e.g. ``model.drop_rate``) and return ``lock(config)``. A locked
config rejects unknown keys, so a typo on the command line is an error rather than a silent no-op.

Keys (``None`` means "unset"; placeholders keep their type so the command line can set them)::

  model.name                  registered model name (jaxvision.models.list_models())
  model.num_classes           None = the dataset's class count
  model.<override>            any other key is passed to models.create (drop_rate, drop_path_rate, ...)
  data.*                      jaxvision.data.default_config() (dataset name, path, image size, ...)
                              (data.train_split / data.eval_split choose the splits; eval_split ''
                              disables evaluation; data.class_weighting weights the loss; mixup and
                              cutmix alphas there are applied in the train step)
  batch_size                  global batch per step (all devices, all processes)
  total_steps / epochs        training length; total_steps wins, else epochs x steps per epoch
  seed                        parameter init, dropout and data order
  dtype                       'float32' | 'bfloat16' | 'float16' (compute dtype; params stay float32)
  parallel                    'jit' (Mesh + NamedSharding, default) | 'pmap' (data parallel only)
  mesh.data / .fsdp / .model  device mesh axis sizes, -1 = the rest of the devices (one axis at
                              most); default data=-1, fsdp=1, model=1 (data parallel). fsdp > 1
                              shards parameters, gradients, optimizer state and EMA (FSDP/ZeRO-3);
                              model > 1 splits attention heads and MLP hidden units (tensor
                              parallel); batches split over data x fsdp (jaxvision.training.mesh)
  sharding_rules              ((regex, spec), ...) per-array overrides, first match wins, e.g.
                              (('head/kernel', (None, 'fsdp')),) (jaxvision.training.sharding)
  remat                       'none' | 'full' | 'dots_saveable': rematerialization policy of the
                              model's blocks (jaxvision.layers.remat): less activation memory for
                              recomputation in the backward pass; parameters unchanged
  checkpoint_every_steps      also saved at the end; keep_checkpoints = last K kept
  best_metric / best_mode     validation metric whose best checkpoint is kept ('' = none)
  eval_every_steps            0 = only at the end
  eval_batch_size             None = batch_size
  log_every_steps             host sync + metrics.jsonl/TensorBoard every N steps
  optimizer.*                 name sgd|adamw|adam|rmsprop|lamb, momentum, nesterov, b1, b2, eps,
                              decay (rmsprop), weight_decay, decay_norms_and_biases, no_decay_regex,
                              freeze (regex), lr_multipliers ((regex, factor), ...)
  schedule.*                  name cosine|step|exponential|constant|linear, base_lr,
                              lr_batch_reference (lr = base_lr x batch/ref when > 0), warmup_steps,
                              warmup_epochs, end_lr_factor, boundaries(_epochs), step_factor,
                              decay_rate, decay_steps / decay_epochs, staircase
  init_from / init_from_step  workdir of a run whose parameters initialise this one (fine-tuning)
  ema_decay                   0 = off; EMA of parameters (TF-style warm-up min(d, (1+n)/(10+n)))
  label_smoothing             0.1 for the ImageNet recipes
  grad_accum_steps            optax.MultiSteps; the optimizer updates every N steps
  clip_grad_norm              0 = off; global-norm clipping
  early_stopping.*            metric, mode ('max'|'min'), patience (evaluations, 0 = off), min_delta
  pruning.*                   target_sparsity (0 = off), begin_step, end_step (0 = total_steps),
                              update_every: gradual global magnitude pruning (Zhu & Gupta) of the
                              conv/dense kernels during training (jaxvision.training.pruning)
  progress_bar                tqdm bar on process 0
  compilation_cache           JAX's persistent compilation cache used by the train command: 'auto'
                              ($JAXVISION_COMPILATION_CACHE, else ~/.cache/jaxvision/jax), a
                              directory, or 'none' (jaxvision.compilation_cache)
  device_data                 'auto' | 'on' | 'off': keep a small dataset on the devices, shuffled
                              and augmented there (jaxvision.training.device_data); 'auto' does it
                              when the recipe allows (single process, jit, pad-crop/flip only,
                              under 1 GiB), 'on' refuses recipes that do not
  steps_per_dispatch          device path: training steps per compiled dispatch (lax.scan); chunks
                              end on every logging/evaluation/checkpoint step
  preemption_sync_every_steps multi-process runs agree on a SIGTERM/SIGINT stop every N steps (one
                              tiny all-gather); a single process checks after every step for free
"""

from __future__ import annotations

import difflib
import math
import os

import ml_collections
from ml_collections import config_dict

DTYPES = ("float32", "bfloat16", "float16")
PARALLEL = ("jit", "pmap")
OPTIMIZERS = ("sgd", "adamw", "adam", "rmsprop", "lamb")
SCHEDULES = ("cosine", "step", "exponential", "constant", "linear")
# Metrics where smaller is better; anything else is maximised.
MIN_METRICS = ("nll", "loss", "ece", "mce", "brier", "classwise_ece")


def _data_defaults() -> ml_collections.ConfigDict:
    try:
        from jaxvision import data
    except ImportError:  # pragma: no cover - only while the data package is being written
        data = None
    if data is not None and hasattr(data, "default_config"):
        return data.default_config()
    # Minimal stand-in with the contract's core keys until jaxvision.data.default_config exists.
    return ml_collections.ConfigDict(
        {"name": "mnist5k", "path": config_dict.placeholder(str), "image_size": 28}
    )


def base_config() -> ml_collections.ConfigDict:
    """Every training key with its default (unlocked, so recipes can add model overrides)."""
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(
        {"name": "lenet5", "num_classes": config_dict.placeholder(int)}
    )
    c.data = _data_defaults()

    c.batch_size = 128
    c.total_steps = config_dict.placeholder(int)
    c.epochs = config_dict.placeholder(float)
    c.seed = 0
    c.dtype = "float32"
    c.parallel = "jit"
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
    c.sharding_rules = ()
    c.remat = "none"

    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    c.best_metric = "top1"
    c.best_mode = "max"
    c.eval_every_steps = 1000
    c.eval_batch_size = config_dict.placeholder(int)
    c.log_every_steps = 50
    c.progress_bar = True
    c.compilation_cache = "auto"
    c.device_data = "auto"
    c.steps_per_dispatch = 1
    c.preemption_sync_every_steps = 10

    c.optimizer = ml_collections.ConfigDict(
        {
            "name": "sgd",
            "momentum": 0.9,
            "nesterov": False,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "decay": 0.9,  # rmsprop's squared-gradient decay (TF "rho")
            "weight_decay": 0.0,
            "decay_norms_and_biases": False,
            "no_decay_regex": "",
            "freeze": "",
            "lr_multipliers": (),
        }
    )
    c.schedule = ml_collections.ConfigDict(
        {
            "name": "cosine",
            "base_lr": 0.1,
            "lr_batch_reference": 0,
            "warmup_steps": 0,
            "warmup_epochs": 0.0,
            "end_lr_factor": 0.0,
            "boundaries": (),
            "boundaries_epochs": (),
            "step_factor": 0.1,
            "decay_rate": 0.97,
            "decay_steps": 0,
            "decay_epochs": 0.0,
            "staircase": True,
        }
    )

    c.init_from = config_dict.placeholder(str)
    c.init_from_step = config_dict.placeholder(int)
    c.ema_decay = 0.0
    c.label_smoothing = 0.0
    c.grad_accum_steps = 1
    c.clip_grad_norm = 0.0
    c.early_stopping = ml_collections.ConfigDict(
        {"metric": "top1", "mode": "max", "patience": 0, "min_delta": 0.0}
    )
    c.pruning = ml_collections.ConfigDict(
        {"target_sparsity": 0.0, "begin_step": 0, "end_step": 0, "update_every": 100}
    )
    return c


def lock(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Lock ``config`` (unknown keys become errors) and return it.

    Every key left ``None`` becomes an untyped placeholder first (see `settable_nones`), so the
    command line can set it.
    """
    settable_nones(config)
    config.lock()
    return config


def settable_nones(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Turns every plain ``None`` leaf into ``config_dict.placeholder(object)``, in place.

    ml_collections' flag parser refuses to override a field whose value is a plain ``None`` ("Type
    NoneType ... is not supported for overriding"); a placeholder of type ``object`` reads its
    command-line value as a Python literal (``1``, ``0.5``, ``'(0.5, 0.5)'``, ``None``) and
    anything else as a string (``/some/dir``). Keys declared with a typed placeholder keep it.
    """
    for key in list(config.keys()):
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            settable_nones(value)
        elif value is None and config.get_type(key) is type(None):
            config[key] = config_dict.placeholder(object)
    return config


def all_keys(config, prefix: str = "") -> list[str]:
    """Dotted names of every leaf key, e.g. ``['model.name', 'optimizer.momentum', ...]``."""
    out = []
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, ml_collections.ConfigDict):
            out.extend(all_keys(v, name + "."))
        else:
            out.append(name)
    return out


def suggest_keys(config, key: str, n: int = 3) -> list[str]:
    """Close matches for a misspelled dotted ``key`` among the config's keys."""
    keys = all_keys(config)
    close = difflib.get_close_matches(key, keys, n=n, cutoff=0.6)
    if not close:  # match on the last component too ('lr' -> 'schedule.base_lr')
        last = key.split(".")[-1]
        close = [k for k in keys if k.split(".")[-1] in difflib.get_close_matches(
            last, [x.split(".")[-1] for x in keys], n=n, cutoff=0.6)][:n]
    return close


def unknown_key_message(config, key: str) -> str:
    close = suggest_keys(config, key)
    hint = f" Did you mean {' or '.join('--config.' + c for c in close)}?" if close else ""
    return (
        f"Unknown config key {key!r}.{hint} The recipe's keys are listed in its config file and in "
        "jaxvision/config.py; model options must be declared by the recipe under config.model."
    )


def _choice(value, allowed, key):
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, 1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"config.{key}={value!r} is not valid{hint}; use one of {', '.join(allowed)}.")


def check(config: ml_collections.ConfigDict) -> None:
    """Validate values that do not depend on the data or the devices; raise ValueError.

    Each message names the key, the value and a valid choice, so the command line can print it as
    its one ``error:`` line.
    """
    _check_choices(config)
    _check_counts(config)
    _check_rates(config)
    _check_model(config)
    _check_init_from(config)


def _check_choices(config) -> None:
    _choice(config.dtype, DTYPES, "dtype")
    _choice(config.parallel, PARALLEL, "parallel")
    _choice(config.optimizer.name, OPTIMIZERS, "optimizer.name")
    _choice(config.schedule.name, SCHEDULES, "schedule.name")
    _choice(config.best_mode, ("max", "min"), "best_mode")
    _choice(config.early_stopping.mode, ("max", "min"), "early_stopping.mode")
    _choice(config.get("device_data", "off"), ("auto", "on", "off"), "device_data")
    _choice(config.data.get("random_erasing_mode", "pixel"), ("pixel", "rand", "const"),
            "data.random_erasing_mode")


def _at_least(config, key: str, low: int) -> None:
    value = config
    for part in key.split("."):
        value = value[part]
    if value is not None and int(value) < low:
        raise ValueError(f"config.{key} must be >= {low}, got {value}.")


def _check_counts(config) -> None:
    for key in ("batch_size", "grad_accum_steps", "log_every_steps", "keep_checkpoints",
                "preemption_sync_every_steps", "eval_batch_size", "pruning.update_every",
                "steps_per_dispatch"):
        _at_least(config, key, 1)
    for key in ("checkpoint_every_steps", "eval_every_steps", "schedule.warmup_steps",
                "early_stopping.patience", "pruning.begin_step", "pruning.end_step"):
        _at_least(config, key, 0)
    if config.total_steps is None and config.epochs is None:
        raise ValueError("Set the training length: --config.total_steps=N or --config.epochs=E.")
    if config.total_steps is not None and config.total_steps < 1:
        raise ValueError(f"config.total_steps must be >= 1, got {config.total_steps}.")
    if config.total_steps is None and not (math.isfinite(config.epochs) and config.epochs > 0):
        raise ValueError(f"config.epochs must be > 0, got {config.epochs}.")
    if config.model.num_classes is not None and config.model.num_classes < 2:
        raise ValueError(f"config.model.num_classes must be >= 2 (a classifier needs two "
                         f"classes), got {config.model.num_classes}; leave it unset to use the "
                         "dataset's class count.")


def _in_range(config, key: str, low: float, high: float, *, high_open: bool = True) -> None:
    value = config
    for part in key.split("."):
        value = value[part]
    ok = math.isfinite(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"config.{key} must be in [{low}, {high}{')' if high_open else ']'}, "
                         f"got {value}.")


def _check_rates(config) -> None:
    lr = config.schedule.base_lr
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"config.schedule.base_lr must be a finite number > 0, got {lr} (a zero "
                         "or negative rate does not train; to freeze weights use "
                         "--config.optimizer.freeze=<regex>).")
    _in_range(config, "pruning.target_sparsity", 0.0, 1.0)
    _in_range(config, "ema_decay", 0.0, 1.0)
    _in_range(config, "label_smoothing", 0.0, 1.0)
    _in_range(config, "optimizer.momentum", 0.0, 1.0)
    _in_range(config, "optimizer.b1", 0.0, 1.0)
    _in_range(config, "optimizer.b2", 0.0, 1.0)
    _in_range(config, "optimizer.weight_decay", 0.0, math.inf)
    _in_range(config, "clip_grad_norm", 0.0, math.inf)
    _in_range(config, "schedule.end_lr_factor", 0.0, 1.0, high_open=False)
    _in_range(config, "schedule.warmup_epochs", 0.0, math.inf)
    _in_range(config, "data.mixup_alpha", 0.0, math.inf)
    _in_range(config, "data.cutmix_alpha", 0.0, math.inf)
    _in_range(config, "data.mixup_switch_prob", 0.0, 1.0, high_open=False)
    _in_range(config, "data.random_erasing_prob", 0.0, 1.0, high_open=False)


def _check_model(config) -> None:
    from jaxvision import models

    names = models.list_models()
    if config.model.name not in names:
        close = difflib.get_close_matches(str(config.model.name), names, 3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"config.model.name={config.model.name!r} is not a registered model."
                         f"{hint} Registered: {', '.join(names)}.")
    _check_remat(config)


def _check_remat(config) -> None:
    from jaxvision.layers.remat import REMAT_POLICIES
    from jaxvision.models import get_spec, list_models
    from jaxvision.models.registry import model_options

    remat = config.get("remat", "none")
    _choice(remat, REMAT_POLICIES, "remat")
    if remat != "none" and "remat" not in model_options(config.model.name):
        families = sorted({get_spec(n).family for n in list_models() if "remat" in model_options(n)})
        raise ValueError(f"config.remat={remat!r}: model {config.model.name!r} has no "
                         f"rematerialized blocks (families that have: {', '.join(families)}); "
                         "use --config.remat=none.")


def _check_init_from(config) -> None:
    path = config.init_from
    if not path:
        return
    run = os.path.abspath(os.path.expanduser(path))
    if os.path.basename(run) == "checkpoints" and os.path.isfile(
            os.path.join(os.path.dirname(run), "config.json")):
        raise ValueError(f"config.init_from={path!r} is a run's checkpoints folder; give the run "
                         f"directory itself: --config.init_from={os.path.dirname(run)}")
    if not os.path.isdir(os.path.join(run, "checkpoints")):
        raise ValueError(f"config.init_from={path!r} is not a training run directory (no "
                         "checkpoints/ in it); give the --workdir of a finished run.")


def check_data(config, info) -> None:
    """Validate the config against the training split (``info``: the pipeline's PipelineInfo).

    Raises ValueError for fewer than two classes, or a global batch larger than the split (every
    step would repeat examples within one batch).
    """
    if int(info.num_classes) < 2:
        raise ValueError(f"the training data has {info.num_classes} class(es) "
                         f"({list(info.class_names)}); a classifier needs at least 2 (for an "
                         "image folder: one sub-folder per class).")
    wanted = config.model.get("num_classes")
    if wanted is not None and int(wanted) < int(info.num_classes):
        raise ValueError(f"config.model.num_classes={wanted} but the training data has "
                         f"{info.num_classes} classes (labels up to {info.num_classes - 1} would "
                         "have no output); leave --config.model.num_classes unset (the data's "
                         f"count) or set it to {info.num_classes} or more.")
    if config.batch_size > info.num_examples:
        raise ValueError(f"config.batch_size={config.batch_size} is larger than the "
                         f"{info.num_examples} training examples (each batch would repeat "
                         f"examples); use --config.batch_size={info.num_examples} or less.")


def resolve_model_image_size(config, image_shape) -> None:
    """Give a model built for one input size the data's size, in ``config.model`` (recorded in the
    run's config.json, so evaluation builds the same model).

    Models registered with ``fixed_input_size`` (CoAtNet: relative-position tables per stage)
    refuse inputs other than their ``image_size`` option (default 224, the paper's). Unless
    ``config.model.image_size`` is set, square data of side S sets it to S, as timm's ``img_size``
    follows the data config. (ViTs interpolate their position embedding to any input, so their
    ``image_size`` is left as the recipe says.) ``image_shape``: (H, W, C) of the training images.
    Raises ValueError for non-square data and no ``config.model.image_size``.
    """
    from jaxvision.models.registry import get_spec

    if not get_spec(config.model.name).fixed_input_size or config.model.get("image_size") is not None:
        return
    height, width = (int(d) for d in image_shape[:2])
    if height != width:
        raise ValueError(f"{config.model.name} is built for square inputs but the data is "
                         f"{height}x{width}; set --config.data.image_size to one side length.")
    with config.unlocked():
        config.model.image_size = height


def steps_per_epoch(config, num_train_examples: int) -> int:
    return max(1, num_train_examples // config.batch_size)


def resolve_total_steps(config, num_train_examples: int) -> int:
    """``total_steps`` if set, else ``ceil(epochs x steps_per_epoch)``."""
    if config.total_steps is not None:
        return int(config.total_steps)
    return int(math.ceil(config.epochs * steps_per_epoch(config, num_train_examples)))


def metric_mode(metric: str) -> str:
    return "min" if metric.split("/")[-1] in MIN_METRICS else "max"


# ---- a recipe file plus command-line overrides (used by jaxvision.sweep) ---------------------------
def from_flags(spec: str, overrides=()) -> ml_collections.ConfigDict:
    """The recipe ``spec`` ('path/to/recipe.py' or 'path.py:arg') with ``overrides``
    (``'--config.key=value'`` strings) applied exactly as ``python -m jaxvision.train`` applies
    them (ml_collections ``config_flags``: each value is parsed with its key's type), locked.

    Raises FileNotFoundError (no such recipe file) or ValueError (an override that is not
    ``--config.key=value``, an unknown key — the message suggests close matches —, a value
    that does not parse as the key's type, or a recipe file that fails to load).
    """
    path = spec.partition(":")[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"config file {path!r} not found (give a path such as configs/mnist5k_lenet.py).")
    keys = _override_keys(overrides)
    try:
        base = _parse_config_flags(spec, [])
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - anything the recipe file itself raises
        raise ValueError(f"could not load config file {spec!r}: {type(e).__name__}: {e}") from e
    known = set(all_keys(base))
    parents = {k.rsplit(".", i)[0] for k in known for i in range(1, k.count(".") + 1)}
    for key in keys:
        if key not in known and key not in parents:
            raise ValueError(unknown_key_message(base, key))
    return _parse_config_flags(spec, overrides) if overrides else base


def _override_keys(overrides) -> list[str]:
    """The dotted keys of ``--config.key=value`` strings; ValueError for anything else."""
    keys = []
    for arg in overrides:
        key, eq, _ = arg.removeprefix("--config.").partition("=")
        if not arg.startswith("--config.") or not eq or not key:
            raise ValueError(f"{arg!r} is not a config override; write --config.key=value.")
        keys.append(key)
    return keys


def _parse_config_flags(spec: str, overrides) -> ml_collections.ConfigDict:
    """config_flags on a private FlagValues (the process's absl FLAGS stay untouched)."""
    from absl import flags
    from ml_collections import config_flags

    argv = ["jaxvision", f"--config={spec}", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "recipe", flag_values=values,
                                    lock_config=True, sys_argv=argv)
    try:
        values(argv)
    except flags.Error as e:
        raise ValueError(f"{e}; give a value of the key's type.") from e
    return values.config
