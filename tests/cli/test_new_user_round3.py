"""Faults a third new-user session found, each fixed as a kind: C++ start-up banners (absl's
pre-InitializeLog notice, oneDNN's I0000 line, TFLite's W0000 notices) on commands run without
--verbosity; ``--help`` exiting with status 1."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = ["train", "evaluate", "predict", "explain", "convert", "compression", "export", "sweep"]
BANNER = re.compile(r"^(I\d{4} |W\d{4} |.*absl::InitializeLog|.*oneDNN)", re.M)


def _run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, "PYTHONPATH": REPO})


@pytest.mark.parametrize("command", COMMANDS)
def test_help_and_a_bad_flag_print_no_banners(command):
    helped = _run(f"jaxvision.{command}", "--help")
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "--verbosity" in helped.stdout or command == "sweep"  # the way to get the logs back
    if command in ("evaluate", "predict", "explain", "export"):  # cli.define_run_flags, shared
        listed = {line.split(":")[0].strip() for line in helped.stdout.splitlines()
                  if line.startswith("  --")}
        assert {"--workdir", "--checkpoint", "--[no]json"} <= listed, listed
        assert "(default: 'latest')" in helped.stdout
    bad = _run(f"jaxvision.{command}", "--no_such_flag=1")
    assert bad.returncode == 2
    for proc in (helped, bad):
        assert not BANNER.search(proc.stderr), proc.stderr
    assert bad.stderr.splitlines() == [bad.stderr.strip()]  # one line...
    assert bad.stderr.startswith("error: Unknown flag --no_such_flag.")  # ...that says what


def test_the_banner_filter_drops_tflite_notices_and_keeps_real_warnings():
    from jaxvision import quiet_stderr

    noise = [b"I0000 00:00:1.2 3 port.cc:153] oneDNN custom operations are on.",
             b"fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, "
             b"output_inference_type: UINT8",
             b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
             b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             b"W0000 00:00:1796077852.5 3691 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.",
             b"W0000 00:00:1796077852.5 3691 tf_tfl_flatbuffer_helpers.cc:367] Ignored "
             b"drop_control_dependency."]
    kept = [b"W0000 00:00:1.2 3 cpu.cc:1] Ignored nothing: a real warning",
            b"E0000 00:00:1.2 3 x.cc:1] an error"]
    assert [line for line in noise + kept if not quiet_stderr._BANNER.match(line)] == kept


def _image_folder_config(model: str, **model_keys):
    from jaxvision import config as config_lib

    config = config_lib.from_flags(os.path.join(REPO, "configs", "image_folder.py"),
                                   [f"--config.model.name={model}", "--config.data.image_size=32"])
    with config.unlocked():
        config.model.update(model_keys)
    return config


def test_a_fixed_size_model_is_built_for_the_datas_size():
    """CoAtNet's relative-position tables fit one input size: training passes the data's (as
    timm's img_size follows the data config) unless the recipe sets model.image_size."""
    import jax
    import jax.numpy as jnp

    from jaxvision import config as config_lib
    from jaxvision.training.loop import build_model

    config = _image_folder_config("coatnet_0")
    config_lib.resolve_model_image_size(config, (32, 32, 3))
    assert config.model.image_size == 32  # recorded in config.json: evaluation builds the same
    model = build_model(config, 2, pmap=False)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    leaves = jax.tree_util.tree_leaves_with_path(shapes["params"])
    assert any(leaf.shape == (768, 2) for _, leaf in leaves), leaves  # builds (traced: cheap)

    given = _image_folder_config("coatnet_0", image_size=64)  # the recipe's word wins
    config_lib.resolve_model_image_size(given, (32, 32, 3))
    assert given.model.image_size == 64
    with pytest.raises(ValueError, match=r"--config.model.image_size=32"):  # a flag that works
        jax.eval_shape(lambda: build_model(given, 2, pmap=False).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    vit = _image_folder_config("vit_ti16")  # interpolates its position embedding: left alone
    config_lib.resolve_model_image_size(vit, (32, 32, 3))
    assert "image_size" not in vit.model
    with pytest.raises(ValueError, match="square inputs but the data is 32x48"):
        config_lib.resolve_model_image_size(_image_folder_config("coatnet_0"), (32, 48, 3))


def test_a_misspelt_subcommand_gets_the_close_match():
    proc = _run("jaxvision.compression", "quantise", "--workdir=run")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert "unknown command 'quantise'; did you mean quantize?" in proc.stderr
