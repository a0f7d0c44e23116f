"""Search spaces written on the command line, as Optuna distributions.

One ``--space`` flag per config key::

    schedule.base_lr=loguniform(1e-4,1e-1)   float, log-uniform (low > 0)
    data.mixup_alpha=uniform(0,0.4)          float, uniform
    model.depth=int(2,8)                     integer, uniform, both bounds included
    model.name=choice(resnet18,resnet34)     one of the values (numbers, True/False/None or words)

A sampled point is applied to the recipe as ``--config.<key>=<value>`` flags, the same strings
``python -m jaxvision.train`` takes, so every trial can be rerun by hand with that command.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

KINDS = ("loguniform", "uniform", "int", "choice")
_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*([a-z]+)\s*\((.*)\)\s*$", re.S)
_EXAMPLE = "e.g. --space 'schedule.base_lr=loguniform(1e-4,1e-1)'"


def _item(text: str):
    """A choice value: a Python literal (1, 0.5, True, None, 'x') or else the bare word."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if value is None or isinstance(value, bool | int | float | str) else text


def _number(text: str, spec: str) -> float:
    value = _item(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"--space {spec!r}: {text!r} is not a number; {_EXAMPLE}.")
    return value


def parse_space(spec: str) -> tuple[str, BaseDistribution]:
    """``'key=kind(args)'`` -> (config key, Optuna distribution); ValueError says what is wrong."""
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"--space {spec!r}: expected KEY=KIND(ARGS) with KIND one of "
                         f"{', '.join(KINDS)}; {_EXAMPLE}.")
    key, kind, body = m.groups()
    args = [a.strip() for a in body.split(",")] if body.strip() else []
    if kind not in KINDS:
        raise ValueError(f"--space {spec!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}.")
    if kind == "choice":
        values = [_item(a) for a in args]
        if not values or any(a == "" for a in args):
            raise ValueError(f"--space {spec!r}: choice(...) needs one or more comma-separated "
                             "values, e.g. choice(resnet18,resnet34).")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"--space {spec!r}: a value is listed twice.")
        return key, CategoricalDistribution(values)
    if len(args) != 2:
        raise ValueError(f"--space {spec!r}: {kind}(low,high) takes two numbers.")
    low, high = (_number(a, spec) for a in args)
    if not low < high:
        raise ValueError(f"--space {spec!r}: low must be smaller than high.")
    if kind == "int":
        if not all(isinstance(v, int) for v in (low, high)):
            raise ValueError(f"--space {spec!r}: int(low,high) takes whole numbers.")
        return key, IntDistribution(low, high)
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"--space {spec!r}: loguniform needs 0 < low; use uniform for ranges "
                         "that include 0.")
    return key, FloatDistribution(float(low), float(high), log=kind == "loguniform")


def parse_spaces(specs: Sequence[str]) -> dict[str, BaseDistribution]:
    """Every ``--space`` flag, in order; a key given twice is an error."""
    if not specs:
        raise ValueError(f"nothing to search: give at least one --space KEY=KIND(ARGS); {_EXAMPLE}.")
    space: dict[str, BaseDistribution] = {}
    for spec in specs:
        key, dist = parse_space(spec)
        if key in space:
            raise ValueError(f"--space: the key {key!r} is given twice.")
        space[key] = dist
    return space


def flag_value(value) -> str:
    """``value`` as config_flags parses it back (floats keep every digit)."""
    return repr(value) if isinstance(value, float) else str(value)


def override_args(params: Mapping[str, object]) -> list[str]:
    """{'schedule.base_lr': 0.001} -> ['--config.schedule.base_lr=0.001']."""
    return [f"--config.{k}={flag_value(v)}" for k, v in params.items()]


def extremes(dist: BaseDistribution) -> list:
    """The values that must all be valid for the key: both bounds, or every choice."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    return [dist.low, dist.high]


def grid(space: Mapping[str, BaseDistribution]) -> dict[str, list]:
    """The search space of Optuna's GridSampler: every choice, every integer in range."""
    out = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            out[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            out[key] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise ValueError(f"--sampler grid: {key} is continuous; give it as choice(v1,v2,...) "
                             "or int(low,high), or use --sampler tpe|random|cmaes.")
    return out


def suggest(trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict:
    """Ask ``trial`` for one value per key (the sampler decides)."""
    params = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            params[key] = trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, IntDistribution):
            params[key] = trial.suggest_int(key, dist.low, dist.high, log=dist.log)
        else:
            params[key] = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
    return params
