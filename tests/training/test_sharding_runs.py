"""Whole runs on sharded meshes: 2 processes x 4 devices == 1 process x 8 devices under 8-way FSDP;
checkpoints resume on other meshes (8-way FSDP -> data 2 x fsdp 4 -> fsdp 4 x model 2 -> one
device) and are read on one device; ``jaxvision.train --config.mesh.fsdp=8`` runs a recipe; a
mesh that does not fit is one error line.

Runs: tests/training/run_fake.py --vit (tiny ViT, 4 steps of batch 32, checkpoints at 2 and 4),
processes on 127.0.0.1 only, each bounded by a timeout.
"""

import os
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from jaxvision.training import checkpoints, loop
from tests.reliability.harness import free_port_pair
from tests.training import fakes
from tests.training.test_multiprocess import TIMEOUT, _cmd, _env, finish

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS, EVERY = 4, 2
ARGS = ("--vit", "--steps", str(STEPS), "--ckpt_every", str(EVERY))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{'one': 1 process x 8 devices, 'two': 2 processes x 4 devices}, both mesh fsdp=8."""
    root = tmp_path_factory.mktemp("fsdp_runs")
    one, two = str(root / "one"), str(root / "two")
    addr = f"127.0.0.1:{free_port_pair()}"
    mesh = ("--mesh", "fsdp=8")
    procs = [subprocess.Popen(
        _cmd(two, *ARGS, *mesh, "--coordinator", addr, "--num_processes", "2", "--process_id",
             str(i)), cwd=REPO, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(2)]
    procs.append(subprocess.Popen(_cmd(one, *ARGS, *mesh), cwd=REPO, env=_env(8),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = finish(procs)
    assert "process 0 of 2, 4 local / 8 global devices" in outs[0][1]
    return {"one": one, "two": two}


def _variables(workdir):
    run = checkpoints.load_run(workdir)
    return run.step, run.variables


def _resumed_copy(src: str, dst: str) -> str:
    """A copy of run ``src`` whose last checkpoint is removed (so a rerun resumes at EVERY)."""
    shutil.copytree(src, dst)
    shutil.rmtree(os.path.join(dst, "checkpoints", str(STEPS)))
    return dst


@pytest.mark.slow
def test_two_processes_match_one_process_under_fsdp(runs):
    (s1, v1), (s2, v2) = _variables(runs["one"]), _variables(runs["two"])
    assert s1 == s2 == STEPS
    # load_run hands out whole arrays on one device, whatever mesh wrote them
    assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(v1))
    chex.assert_trees_all_close(v1, v2, atol=1e-5, rtol=1e-5)
    init = loop.init_variables(
        loop.build_model(fakes.tiny_config(**fakes.TINY_VIT), fakes.NUM_CLASSES, pmap=False),
        fakes.SHAPE, jax.random.split(jax.random.PRNGKey(0))[0])
    assert not fakes.jnp_tree_allclose(init["params"], v1["params"], atol=1e-4)  # it trained


@pytest.mark.slow
def test_checkpoint_resumes_on_other_meshes(runs, tmp_path):
    _, want = _variables(runs["one"])
    # the same command on other meshes of this process's 8 devices, resuming from step EVERY
    for mesh in ({"data": 2, "fsdp": 4}, {"fsdp": 4, "model": 2}):
        wd = _resumed_copy(runs["one"], str(tmp_path / "_".join(f"{k}{v}" for k, v in mesh.items())))
        c = fakes.tiny_config(
            total_steps=STEPS, checkpoint_every_steps=EVERY, eval_every_steps=STEPS,
            keep_checkpoints=2, **fakes.TINY_VIT, **{"optimizer.name": "sgd",
                                                     "schedule.base_lr": 0.1},
            **{f"mesh.{k}": v for k, v in mesh.items()})
        res = loop.train_and_evaluate(c, wd, build_data=fakes.make_build())
        assert res["step"] == STEPS
        step, got = _variables(wd)
        assert step == STEPS
        chex.assert_trees_all_close(want, got, atol=1e-5, rtol=1e-5, custom_message=str(mesh))
    # and on one device, in a process that has only one
    wd = _resumed_copy(runs["one"], str(tmp_path / "one_device"))
    p = subprocess.run(_cmd(wd, *ARGS, "--mesh", "data=1"), cwd=REPO, env=_env(1),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0 and "FINISHED" in p.stdout, p.stderr[-3000:]
    assert "Resuming from" in p.stderr
    chex.assert_trees_all_close(want, _variables(wd)[1], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_recipe_trains_on_fsdp_mesh_from_the_command_line(tmp_path):
    """The issue's 'done means': jaxvision.train --config.mesh.fsdp=8 on 8 simulated devices
    (the ViT-S/16 recipe on mocked ImageNet at 32 px, its 12 layers scanned to compile once)."""
    wd = str(tmp_path / "vit_s16_fsdp8")
    cmd = [sys.executable, "-m", "tests.training.mock_train",
           f"--config={os.path.join(REPO, 'configs', 'imagenet_vit_s16.py')}", f"--workdir={wd}",
           "--config.mesh.fsdp=8", "--config.total_steps=2", "--config.batch_size=8",
           "--config.data.image_size=32", "--config.model.scan_layers=True",
           "--config.dtype=float32",  # XLA:CPU compiles the bfloat16 step about twice as slowly
           "--config.progress_bar=False", "--config.log_every_steps=1"]
    p = subprocess.run(cmd, cwd=REPO, env=_env(8), capture_output=True, text=True,
                       timeout=2 * TIMEOUT)
    assert p.returncode == 0 and "FINISHED" in p.stdout, p.stderr[-3000:]
    run = checkpoints.load_run(wd)
    assert run.step == 2 and all(np.isfinite(x).all() for x in jax.tree.leaves(run.variables))
    # ViT-S/16's 12 stacked layers of 384 -> 1536 MLP kernels (sharded 8 ways while training)
    assert run.variables["params"]["encoder"]["blocks"]["mlp"]["fc1"]["kernel"].shape == (
        12, 384, 1536)


def test_bad_mesh_is_one_error_line(tmp_path):
    """One command line (the other refusals are ValueErrors of the same path, tested in
    test_sharding.py): exit status 2 and one 'error:' line, before any step."""
    p = subprocess.run(
        [sys.executable, "-m", "jaxvision.train",
         f"--config={os.path.join(REPO, 'configs', 'mnist5k_lenet.py')}",
         f"--workdir={tmp_path / 'w'}", "--config.total_steps=1", "--config.mesh.fsdp=3"],
        cwd=REPO, env=_env(8), capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config.mesh: data=-1 x fsdp=3 x "
                                                   "model=1 needs a multiple of 3 devices, but "
                                                   "there are 8"), p.stderr
    assert not os.path.exists(os.path.join(tmp_path, "w", "metrics.jsonl"))  # refused at build
