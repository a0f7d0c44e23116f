"""jaxvision.compilation_cache: where the cache lives, and a second process compiles nothing."""

import json
import os
import subprocess
import sys

from jaxvision import compilation_cache as cc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import json, sys
from jaxvision import compilation_cache as cc
cc.enable(sys.argv[1], report_at_exit=False)
import jax, jax.numpy as jnp
jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()
print(json.dumps(cc.stats()))
"""


def _run(setting, env):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, setting], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_hits_the_cache_for_every_compilation(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    directory = str(tmp_path / "cache")
    first = _run(directory, env)
    assert first["directory"] == directory and first["requests"] > 0
    assert first["hits"] == 0 and first["misses"] == first["requests"]
    assert any(name.endswith("-cache") for name in os.listdir(directory))
    second = _run(directory, env)
    assert second["requests"] == first["requests"] == second["hits"]
    assert second["hit_rate"] == 1.0
    off = _run("none", env)
    assert off["directory"] is None and off["requests"] == 0


def test_directory_setting_env_and_default(monkeypatch, tmp_path):
    monkeypatch.delenv(cc.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cc.resolve_directory("auto") == os.path.join(str(tmp_path), "jaxvision", "jax")
    assert cc.resolve_directory(None) == cc.resolve_directory("auto")
    monkeypatch.setenv(cc.ENV_VAR, str(tmp_path / "env"))
    assert cc.resolve_directory("auto") == str(tmp_path / "env")
    assert cc.resolve_directory(str(tmp_path / "cfg")) == str(tmp_path / "cfg")  # config wins
    for off in ("none", "OFF", ""):
        assert cc.resolve_directory(off) is None
    monkeypatch.setenv(cc.ENV_VAR, "none")
    assert cc.resolve_directory("auto") is None
