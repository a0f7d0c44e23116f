"""What every command line shares: one flag language, quiet logs, machine-readable output.

The flag language (absl flags, snake_case; see README "Command lines"):

- config-driven commands take ``--config.key=value`` for every key of their config, including
  keys whose default is None (``--config.data.mean='(0.5, 0.5, 0.5)'``); ``--help_config`` lists
  the keys with their current values;
- shared names: ``--workdir``, ``--checkpoint latest|best|N`` (default ``latest``),
  ``--batch_size``, ``--top_k``, ``--output``, ``--json`` (stdout holds exactly one JSON
  document, every log line goes to stderr), ``--verbosity`` (absl's: -1 quiet default, 0 INFO,
  1 DEBUG; also brings back TensorFlow/XLA's C++ banners);
- bad input is one line ``error: <what is wrong and how to fix it>`` on stderr, exit status 2.

Entry points call :func:`run` instead of ``absl.app.run``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence

from absl import app, flags
from absl import logging as absl_logging

from jaxvision import env_settings
from jaxvision.quiet_stderr import filtered_stderr, verbosity_requested

USAGE_EXIT = 2
_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
_CONFIG_OVERRIDE = re.compile(r"^--config\.([A-Za-z0-9_.]+)(?:=(.*))?$", re.S)

flags.DEFINE_bool("help_config", False, "List the config keys this command takes as "
                  "--config.key=value, with their current values, and exit.")
# Flags that cli's functions define (define_run_flags) belong to the command that calls them, so
# that its --help lists them (absl shows a command's own "key" flags).
flags.disclaim_key_flags()


class UsageError(ValueError):
    """Bad command-line input: printed as ``error: <message>``, exit status 2."""


def fail(message: str, status: int = USAGE_EXIT) -> None:
    """Print ``error: message`` (one line) on stderr and exit with ``status`` (2: bad input).

    The line is the command's last word: the compilation cache's exit summary is dropped."""
    cache = sys.modules.get("jaxvision.compilation_cache")
    if cache is not None:
        cache.skip_report()
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(status)


def output_folder(path: str, flag: str = "--output") -> str:
    """Check, before any work, that ``path`` can be the folder of a command's outputs: a folder,
    or a path whose nearest existing parent is a writable folder (the command makes it when it
    writes, so a refused run leaves nothing behind). Raises UsageError naming ``flag``."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        where = "is a file" if probe == os.path.abspath(path) else f"is inside the file {probe}"
        raise UsageError(f"{flag} {path} {where}; give a folder for the outputs")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {probe} is not writable; give a folder you can write to")
    return path


def quiet_environment(argv: Sequence[str]) -> None:
    """Before TensorFlow/JAX are imported: silence their C++ banners (oneDNN, cuda probing) unless
    ``--verbosity`` is given. ``TF_CPP_MIN_LOG_LEVEL=2`` keeps errors; a value the user set wins."""
    if not verbosity_requested(argv):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_quietly(argv: Sequence[str], tensorflow: bool = True) -> None:
    """Unless ``--verbosity`` is in ``argv``: import TensorFlow (if ``tensorflow``) and initialise
    JAX's backend now, with their start-up banners filtered out (call before anything imports
    them). Commands that never open a dataset pass ``tensorflow=False``: importing it costs
    3-5 CPU seconds. With multi-host flags or a detectable cluster the backend is left alone:
    jax.distributed must start it."""
    quiet_environment(argv)
    if verbosity_requested(argv):
        return
    with filtered_stderr():
        import jax

        if tensorflow:
            from jaxvision.data import _tf

            _tf.load()  # TensorFlow and TFDS, configured off the GPU
        from jaxvision.training import distributed

        if not distributed.will_initialize(argv):
            jax.devices()


class LogFormatter(logging.Formatter):
    """jaxvision's own records as ``jaxvision: message`` (``jaxvision: warning: message`` above
    INFO; ``jaxvision[I]: ...`` on process I of a multi-process run); other libraries' records
    (TFDS, Orbax, JAX) keep ``fallback``'s format (absl's ``W1130 20:11:03.123 file.py:12]``),
    which says where they come from."""

    def __init__(self, fallback: logging.Formatter):
        super().__init__()
        self.fallback = fallback
        self.process: int | None = None  # set by show_routine_logs in multi-process runs

    def format(self, record: logging.LogRecord) -> str:
        if record.name != "jaxvision" and not record.name.startswith("jaxvision."):
            return self.fallback.format(record)
        origin = "jaxvision" if self.process is None else f"jaxvision[{self.process}]"
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        text = f"{origin}: {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _log_formatter() -> LogFormatter:
    absl_logging.use_absl_handler()  # on the root logger (app.run does it; library callers not)
    handler = absl_logging.get_absl_handler()
    current = handler.python_handler.formatter
    if isinstance(current, LogFormatter):
        return current
    formatter = LogFormatter(current or absl_logging.PythonFormatter())
    handler.setFormatter(formatter)
    return formatter


def quiet_logging() -> None:
    """After flags are parsed: jaxvision's routine messages are shown at INFO as ``jaxvision:
    ...`` lines; without ``--verbosity``, TFDS/Orbax/JAX show warnings only (all on stderr)."""
    _log_formatter()
    if flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present:
        return
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("jaxvision").setLevel(logging.INFO)
    # JAX's "no GPU/TPU found, falling back to CPU" is a notice, not a problem.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)


def show_routine_logs(process_index: int, process_count: int) -> None:
    """Once a multi-process run has started (``jax.distributed``): process 0 shows jaxvision's
    INFO lines, the others warnings and errors only (each process logs the same routine steps);
    lines carry the process index. A no-op for one process."""
    if process_count <= 1:
        return
    _log_formatter().process = process_index
    if process_index > 0 and not (flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present):
        logging.getLogger("jaxvision").setLevel(logging.WARNING)


@contextlib.contextmanager
def json_stdout(enabled: bool = True) -> Iterator[Callable[[object], None]]:
    """While active, everything written to stdout (Python prints, TFDS's progress messages, C
    libraries writing to fd 1) goes to stderr; the yielded ``emit(obj)`` writes one JSON document
    to the real stdout. With ``enabled=False`` stdout is left alone and ``emit`` prints JSON."""
    if not enabled:
        yield lambda obj: print(json.dumps(obj), flush=True)
        return
    sys.stdout.flush()
    saved_fd = os.dup(1)
    os.dup2(2, 1)
    saved_stdout = sys.stdout
    sys.stdout = sys.stderr
    documents: list[str] = []
    try:
        yield lambda obj: documents.append(json.dumps(obj))
    finally:
        sys.stdout.flush()
        sys.stdout = saved_stdout
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
    if len(documents) != 1:
        raise RuntimeError(f"--json must print exactly one document, got {len(documents)}")
    print(documents[0], flush=True)


# ---- --config.key=value overrides --------------------------------------------------------------
def pop_config_overrides(argv: Sequence[str], keep: Callable[[str], bool] = lambda key: False
                         ) -> tuple[list[str], list[tuple[str, str]]]:
    """Split ``--config.key=value`` (or ``--config.key value``) out of ``argv``.

    Returns (the other arguments, [(key, value text)]); overrides whose key satisfies ``keep``
    stay in the returned argv (for ml_collections' own parser).
    """
    rest, overrides = [], []
    args = list(argv)
    i = 0
    while i < len(args):
        m = _CONFIG_OVERRIDE.match(args[i])
        if m and not keep(m.group(1)):
            value = m.group(2)
            if value is None:
                if i + 1 >= len(args):
                    raise UsageError(f"--config.{m.group(1)} needs a value (--config.key=value)")
                value, i = args[i + 1], i + 1
            overrides.append((m.group(1), value))
        else:
            rest.append(args[i])
        i += 1
    return rest, overrides


def parse_value(text: str, current):
    """Command-line text -> a value of ``current``'s type (any Python literal when ``current`` is
    None; plain text when it is not a literal)."""
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise UsageError(f"{text!r} is not a boolean (true/false)")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text
        raise UsageError(f"{text!r} is not a {type(current).__name__}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, list | tuple | int | float):
        return tuple(value) if isinstance(value, list | tuple) else (value,)
    if current is not None and not isinstance(value, type(current)):
        raise UsageError(f"{text!r} is not a {type(current).__name__}")
    return value


def apply_overrides(config, overrides: Sequence[tuple[str, str]]) -> None:
    """Set each dotted ``key`` of ``config`` (an ml_collections ConfigDict) from its text.

    Raises UsageError naming the key (and close matches) when it does not exist or the value does
    not fit its type.
    """
    from jaxvision import config as config_lib

    known = set(config_lib.all_keys(config))
    for key, text in overrides:
        if key not in known:
            raise UsageError(config_lib.unknown_key_message(config, key))
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        try:
            value = parse_value(text, node[leaf])
            with config.unlocked() if hasattr(config, "unlocked") else contextlib.nullcontext():
                node[leaf] = value
        except (UsageError, TypeError, ValueError) as e:
            raise UsageError(f"--config.{key}={text}: {e}") from None


def load_recipe(spec: str):
    """``get_config(arg)`` of a recipe file given as ``path[:arg]`` (e.g.
    ``configs/image_folder.py:resnet50``); UsageError when it is missing or does not load."""
    import importlib.util

    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise UsageError(f"config file {path!r} not found (give a recipe such as "
                         "configs/mnist5k_lenet.py)")
    try:
        module_spec = importlib.util.spec_from_file_location("jaxvision_recipe", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.get_config(arg) if arg else module.get_config()
    except SyntaxError as e:
        raise UsageError(f"config file {path!r} has a syntax error at line {e.lineno}: {e.msg}; "
                         "fix the file") from None
    except Exception as e:  # noqa: BLE001 - any failure of the user's file, as one line
        raise UsageError(f"could not load config file {path!r}: {type(e).__name__}: {e}") from None


def check_recipe_overrides(argv: Sequence[str]):
    """Before absl parses a recipe-driven command line (train, sweep): load the ``--config``
    recipe and check every ``--config.key`` against it, so that a missing or broken recipe and an
    unknown key are one ``error:`` line with close matches (absl would show a traceback).

    Returns the recipe's config, or None without ``--config`` (absl then reports the missing flag).
    """
    from jaxvision import config as config_lib

    spec = recipe_argument(argv)
    if spec is None:
        return None
    try:
        config = load_recipe(spec)
        _, overrides = pop_config_overrides(argv)
    except UsageError as e:
        fail(str(e))
    known = set(config_lib.all_keys(config))
    # A whole sub-config (--config.data=...) is a key to ml_collections too.
    known |= {k.rsplit(".", i)[0] for k in known for i in range(1, k.count(".") + 1)}
    for key, _ in overrides:
        if key not in known:
            fail(config_lib.unknown_key_message(config, key))
    return config


def recipe_argument(argv: Sequence[str]) -> str | None:
    """The value of ``--config=FILE[:arg]`` / ``--config FILE`` in ``argv`` (None if absent)."""
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def none_valued(config, key: str) -> bool:
    """True when dotted ``key`` exists in ``config`` with the value None."""
    node = config
    try:
        for part in key.split("."):
            node = node[part]
    except (KeyError, AttributeError, TypeError):
        return False
    return node is None


def print_config_keys_and_exit(argv: Sequence[str]) -> None:
    """``--help_config`` of a recipe-driven command: list the recipe's keys, exit 0."""
    spec = recipe_argument(argv)
    if spec is None:
        fail("--help_config lists a recipe's keys: give it with --config configs/<recipe>.py")
    try:
        config = load_recipe(spec)
    except UsageError as e:
        fail(str(e))
    print(format_config_keys(config, f"config keys of {spec} (set with --config.key=value):"))
    sys.exit(0)


def print_run_config_keys(workdir: str | None, checkpoint: str) -> int:
    """``--help_config`` of a command that reads a run directory (evaluate, export): the keys of
    the run's config (the base config's without ``--workdir``); returns exit status 0."""
    from jaxvision import config as config_lib

    if workdir is None:
        config, title = config_lib.base_config(), "config keys (of a run's config.json):"
    else:
        config, title = open_run(workdir, checkpoint).config, f"config keys of {workdir}:"
    print(format_config_keys(config, title))
    return 0


def format_config_keys(config, title: str) -> str:
    """``--help_config`` text: one line per key, ``--config.key=value``, sorted."""
    from jaxvision import config as config_lib

    lines = [title]
    for key in sorted(config_lib.all_keys(config)):
        node = config
        for p in key.split("."):
            node = node[p]
        lines.append(f"  --config.{key}={node!r}")
    return "\n".join(lines)


# ---- running a command -------------------------------------------------------------------------
def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(flag_error_message(e))
    return []


def flag_error_message(error: flags.Error) -> str:
    """One line for absl's flag-parsing errors (an unknown flag names the close ones)."""
    if isinstance(error, flags.UnrecognizedFlagError):
        return unknown_flag_message(error.flagname, list(flags.FLAGS))
    return f"{str(error).rstrip('.')}. See --help for the flags."


def unknown_flag_message(name: str, known: Sequence[str]) -> str:
    """``Unknown flag --NAME. Did you mean --a or --b? See --help for the flags.`` (close matches
    by difflib, worded as unknown config keys are, not absl's ``Did you mean: json ?.``)."""
    import difflib

    close = difflib.get_close_matches(name, [k for k in known if len(k) > 1], n=3, cutoff=0.6)
    tip = f" Did you mean {' or '.join(f'--{c}' for c in close)}?" if close else ""
    return f"Unknown flag --{name}.{tip} See --help for the flags."


def run(main: Callable[..., int | None], argv: Sequence[str] | None = None, *,
        config_overrides: bool | Callable[[str], bool] = False, tensorflow: bool = True) -> None:
    """``absl.app.run(main)`` with the project's conventions: C++ banners off unless
    ``--verbosity``; flag errors and ``UsageError``/``app.UsageError`` raised by ``main`` become
    one ``error:`` line with exit status 2. With ``config_overrides``, ``--config.key=value``
    arguments are taken out before absl parses and passed as ``main(argv, overrides)`` (a list of
    (key, text) for :func:`apply_overrides`), for commands whose config is only known after
    parsing (evaluate: the run directory's). A callable ``config_overrides(key)`` keeps the
    overrides it is true for in argv, for ml_collections' own ``--config`` flag (train: every key
    but those whose default is None, which ml_collections cannot parse). ``tensorflow=False``:
    the command never needs TensorFlow, so it is not imported up front (see import_quietly)."""
    argv = list(sys.argv if argv is None else argv)
    quiet_environment(argv)
    overrides: list[tuple[str, str]] = []
    if config_overrides:
        try:
            keep = config_overrides if callable(config_overrides) else (lambda key: False)
            argv, overrides = pop_config_overrides(argv, keep)
        except UsageError as e:
            fail(str(e))

    def checked_main(args):
        quiet_logging()
        import_quietly(argv, tensorflow)  # after parsing: a flag error needs neither TensorFlow nor JAX
        if flags.FLAGS.help_config and not config_overrides:
            fail("--help_config lists config keys of the config-driven commands (train, "
                 "evaluate, compression distill); this command has no config")
        try:
            return main(args, overrides) if config_overrides else main(args)
        except (UsageError, app.UsageError) as e:
            fail(str(e))

    run_absl(checked_main, argv, _parse_flags)


def run_absl(main: Callable, argv: Sequence[str], flags_parser: Callable) -> None:
    """``absl.app.run`` with ``--help`` ending in status 0 (absl ends it with 1; asking for help
    is not a failure)."""
    try:
        env_settings.check_all()
    except ValueError as e:
        fail(str(e))
    try:
        app.run(main, argv=list(argv), flags_parser=flags_parser)
    except SystemExit as e:
        if e.code == 1 and any(a in _HELP_FLAGS for a in argv[1:]):
            sys.exit(0)
        raise


# ---- the commands that read a run directory (evaluate, predict, explain, export) --------------
_RUN_READING_KEYS = ("eval_batch_size",)  # the non-data keys evaluation reads (evaluator.py)


def apply_data_overrides(run, overrides: Sequence[tuple[str, str]]) -> None:
    """``--config.key=value`` of evaluate/export on a loaded run: other data (another dataset or
    an image folder) gets the run's own preprocessing first (``run_input.pin_preprocessing``),
    then the overrides (which may change it on purpose). UsageError for a bad key or value."""
    if not overrides:
        return
    # The model and its training are the run's own (built from config.json before these apply):
    # a model or training key here would change nothing, so it is refused, not ignored.
    ignored = [key for key, _ in overrides
               if not key.startswith("data.") and key not in _RUN_READING_KEYS]
    if ignored:
        raise UsageError(f"--config.{ignored[0]} has no effect on a trained run (its model and "
                         "training are fixed by its config.json); this command reads only "
                         f"--config.data.* and --config.{' / --config.'.join(_RUN_READING_KEYS)}")
    from jaxvision.evaluation import run_input

    try:
        run_input.pin_preprocessing(run)
    except ValueError as e:  # DataError: nothing tells the run's input size offline
        raise UsageError(str(e)) from None
    apply_overrides(run.config, overrides)


def define_run_flags(*, batch_size: int | None = None, batch_size_help: str | None = None,
                     json_help: str = "Print one JSON document on stdout (logs go to stderr).",
                     workdir_help: str = "Run directory (written by jaxvision.train, convert or "
                                         "compression).") -> None:
    """Define the flags every run-reading command shares, once (README "Command lines"):
    ``--workdir``, ``--checkpoint`` (default ``latest``), ``--batch_size`` (when the command
    batches: ``batch_size_help`` given), ``--json``, and show ``--verbosity`` in its ``--help``."""
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.DEFINE_string("checkpoint", "latest",
                        "Which checkpoint: 'latest', 'best' or a step number.")
    if batch_size_help is not None:
        flags.DEFINE_integer("batch_size", batch_size, batch_size_help, lower_bound=1)
    flags.DEFINE_bool("json", False, json_help)
    flags.declare_key_flag("verbosity")


def image_arguments(argv: Sequence[str]) -> list[str]:
    """The IMAGE_OR_FOLDER arguments of predict/explain (after the flags), checked: UsageError
    without ``--workdir``, without arguments, or for a folder that holds no image file."""
    from jaxvision.data.image_listing import IMAGE_EXTENSIONS, list_images

    paths = list(argv[1:])
    if flags.FLAGS.workdir is None:
        raise UsageError("--workdir is required (a run directory)")
    if not paths:
        raise UsageError("give at least one image file or folder after the flags")
    empty = [p for p in paths if os.path.isdir(p) and not list_images(p)]
    if empty:
        raise UsageError(f"no image files in folder {empty[0]} (searched recursively for "
                         f"{', '.join(IMAGE_EXTENSIONS)})")
    return paths


def report_unreadable(results: Sequence[dict]) -> None:
    """Name each file of predict/explain ``results`` that could not be read (stderr)."""
    for r in results:
        if "error" in r:
            print(f"cannot read {r['file']}: {r['error']}", file=sys.stderr)


def require_one_read(results: Sequence[dict], done_key: str) -> None:
    """``fail`` (exit status 2) when no result has ``done_key``: not one file could be read."""
    from jaxvision.data.image_listing import IMAGE_EXTENSIONS

    if not any(done_key in r for r in results):
        fail("none of the given files could be read as an image; give image files "
             f"({', '.join(IMAGE_EXTENSIONS)}) or folders holding them")


def open_run(workdir: str, checkpoint: str):
    """``load_run(workdir, checkpoint)`` for a command line: a bad ``--checkpoint``, a missing
    workdir or a run that does not load is one ``error:`` line with exit status 2."""
    from jaxvision import evaluation
    from jaxvision.training import checkpoints

    if not os.path.isdir(workdir):
        fail(f"--workdir {workdir!r} is not a directory; give a run directory written by "
             "jaxvision.train, convert or compression")
    try:
        which = evaluation.parse_checkpoint(checkpoint)
    except ValueError as e:
        fail(f"--checkpoint: {e}")
    try:
        return checkpoints.load_run(workdir, which)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
