"""python -m jaxvision.train: overrides, clear errors, recipes."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from jaxvision import cli
from jaxvision import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = ["mnist5k_lenet", "image_folder", "cifar10_resnet18", "imagenet_resnet50",
           "imagenet_efficientnet_b0"]


def _recipe(name, arg=None):
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg) if arg else mod.get_config()


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_are_locked_and_valid(name):
    c = _recipe(name)
    config_lib.check(c)
    assert c.is_locked
    with pytest.raises(AttributeError):
        c.not_a_key = 1
    doc = open(os.path.join(REPO, "configs", f"{name}.py")).read()
    assert "python -m jaxvision.train --config configs/" in doc


def test_imagenet_resnet50_recipe_numbers():
    c = _recipe("imagenet_resnet50")
    assert (c.optimizer.name, c.optimizer.momentum, c.optimizer.weight_decay) == ("sgd", 0.9, 1e-4)
    assert not c.optimizer.decay_norms_and_biases and c.label_smoothing == 0.1
    assert c.schedule.warmup_epochs == 5 and c.schedule.name == "cosine" and c.epochs == 90
    from jaxvision.training import optimizers

    assert optimizers.peak_learning_rate(c) == pytest.approx(0.1 * c.batch_size / 256)


def test_efficientnet_recipe_numbers():
    c = _recipe("imagenet_efficientnet_b0")
    o, s = c.optimizer, c.schedule
    assert (o.name, o.decay, o.momentum, o.eps, o.weight_decay) == ("rmsprop", 0.9, 0.9, 1e-3, 1e-5)
    assert (s.name, s.decay_rate, s.decay_epochs, s.base_lr) == ("exponential", 0.97, 2.4, 0.016)
    assert (c.ema_decay, c.label_smoothing, c.model.drop_rate, c.model.drop_path_rate) == (
        0.9999, 0.1, 0.2, 0.2)


def test_unknown_override_suggests_close_match(capsys):
    argv = ["train", "--config", os.path.join(REPO, "configs/mnist5k_lenet.py"), "--workdir", "x",
            "--config.optimizer.nme=adamw"]
    with pytest.raises(SystemExit) as e:
        cli.check_recipe_overrides(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'optimizer.nme'" in err and "--config.optimizer.name" in err
    assert "Traceback" not in err


def test_bad_value_is_clear():
    c = _recipe("mnist5k_lenet")
    with c.unlocked():
        c.parallel = "pmapp"
    with pytest.raises(ValueError, match=r"parallel='pmapp'.*did you mean 'pmap'"):
        config_lib.check(c)


@pytest.mark.slow
def test_cli_overrides_and_pmap_on_default_recipe(tmp_path):
    """The default recipe with overrides, on the pmap path with 8 simulated devices."""
    wd = str(tmp_path / "run")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "jaxvision.train", "--config", "configs/mnist5k_lenet.py",
           "--workdir", wd, "--config.parallel=pmap", "--config.total_steps=30",
           "--config.batch_size=64", "--config.eval_every_steps=30",
           "--config.optimizer.name=adam", "--config.schedule.base_lr=0.003",
           "--config.schedule.warmup_steps=5",
           "--config.progress_bar=False"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    cfg = json.load(open(os.path.join(wd, "config.json")))
    assert (cfg["parallel"], cfg["total_steps"], cfg["batch_size"]) == ("pmap", 30, 64)
    assert (cfg["optimizer"]["name"], cfg["schedule"]["base_lr"]) == ("adam", 0.003)
    rows = [json.loads(x) for x in open(os.path.join(wd, "metrics.jsonl"))]
    val = [r for r in rows if "val/top1" in r]
    assert val and val[-1]["step"] == 30 and val[-1]["val/top1"] > 0.5  # 10 classes: chance 0.1
    env_json = json.load(open(os.path.join(wd, "env.json")))
    assert env_json["device_count"] == 8


def test_default_job_from_device_memory_never_imports_tensorflow(tmp_path):
    # The bundled split is read as NumPy arrays (bit for bit the evaluation pipeline's inputs),
    # trained from device memory, and the TensorBoard events are written with TensorBoard's own
    # protos: TensorFlow/TFDS (3-5 CPU s), matplotlib and sklearn are never imported.
    wd = str(tmp_path / "run")
    heavy = ("tensorflow", "tensorflow_datasets", "matplotlib", "sklearn", "optuna", "torch")
    code = ("import runpy, sys\n"
            "sys.argv = ['jaxvision.train', '--config=configs/mnist5k_lenet.py', "
            f"'--workdir={wd}', '--config.total_steps=20', '--config.device_data=on']\n"
            "try:\n    runpy.run_module('jaxvision.train', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            f"print('LOADED', [m for m in {heavy!r} if m in sys.modules])\n")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as a user has
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []", proc.stdout[-2000:]
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
    assert any("test/top1" in r for r in rows)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(wd, "tensorboard")))
