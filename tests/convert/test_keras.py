"""Keras applications -> jaxvision: the same random weights give the same logits (1e-4)."""

import functools

import jax
import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # keras-internal numpy 2 notices

from jaxvision import models  # noqa: E402
from jaxvision.convert import save_converted  # noqa: E402
from jaxvision.convert.keras import convert_keras, keras_application  # noqa: E402


def _randomize_batchnorm(model, seed=0):
    """Non-trivial BN statistics, so that a wrong mapping or epsilon shows in the logits."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, n).astype("float32"))


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, variables, x):
    """``model.apply(variables, x, train=False)`` compiled as one program: op by op, every
    convolution of these networks is compiled on its own (about 1000 small XLA compilations for
    EfficientNet-B0, most of the test's time). The same model (Flax modules compare by their
    fields) reuses the compiled program."""
    return model.apply(variables, x, train=False)


def _logits_equal(converted, keras_model, keras_input, pixels):
    ref = np.asarray(keras_model(keras_input, training=False))
    got = np.asarray(_apply(converted.create_model(), converted.variables,
                            converted.normalize(pixels)))
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert np.abs(ref).max() > 1e-2  # the comparison is not between two near-zero vectors
    return got


def test_efficientnet_b0_parity_with_in_model_normalization(tmp_path):
    km = keras_application(
        "efficientnet_b0", input_shape=(32, 32, 3), classes=7, classifier_activation=None
    )
    _randomize_batchnorm(km)
    norm = km.get_layer("normalization")  # what weights='imagenet' loads: ImageNet mean / std^2
    stored = {w.path.split("/")[-1]: w for w in norm.weights}
    stored["mean"].assign(np.array([0.485, 0.456, 0.406], "float32").reshape(stored["mean"].shape))
    stored["variance"].assign(
        (np.array([0.229, 0.224, 0.225], "float32") ** 2).reshape(stored["variance"].shape)
    )
    norm.finalize_state()  # as after load_weights
    c = convert_keras(km)
    assert c.model_name == "efficientnet_b0" and c.num_classes == 7 and c.image_shape == (32, 32, 3)
    np.testing.assert_allclose(c.mean, [0.485, 0.456, 0.406], atol=1e-6)
    np.testing.assert_allclose(c.std, [0.229, 0.224, 0.225], atol=1e-6)
    pixels = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    got = _logits_equal(c, km, pixels * 255.0, pixels)  # Keras takes 0..255 pixels

    # Saved as a run directory: load_run gives the same model and logits, init_from can read it.
    from jaxvision.training.checkpoints import load_pretrained, load_run

    out = save_converted(c, str(tmp_path / "run"))
    run = load_run(out)
    assert run.config.model.bn_epsilon == pytest.approx(1e-3)
    np.testing.assert_allclose(run.config.data.std, c.std, atol=1e-7)
    again = np.asarray(_apply(run.model, run.variables, c.normalize(pixels)))
    np.testing.assert_allclose(again, got, atol=1e-6)
    pre, meta = load_pretrained(out)
    assert meta["model"] == "efficientnet_b0" and "head" in pre["params"]


def test_second_efficientnet_in_one_session_converts():
    """Keras numbers layer names per session: the second EfficientNet's Normalization layer is
    'normalization_1' (or later); the converter finds it by type."""
    kw = dict(input_shape=(32, 32, 3), classes=5, classifier_activation=None)
    keras_application("efficientnet_b0", **kw)
    km = keras_application("efficientnet_b0", **kw)
    norm = [layer for layer in km.layers if type(layer).__name__ == "Normalization"]
    assert len(norm) == 1 and norm[0].name != "normalization"
    _randomize_batchnorm(km, seed=3)
    c = convert_keras(km)
    pixels = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    _logits_equal(c, km, pixels * 255.0, pixels)


def test_mobilenet_v2_parity_and_cli(tmp_path):
    # 32 px: even inputs to every stride-2 conv, where Keras' TF-"SAME" padding is asymmetric;
    # the converter builds mobilenet_v2 with padding="SAME" to match it.
    km = keras_application(
        "mobilenet_v2", input_shape=(32, 32, 3), classes=5, classifier_activation=None
    )
    _randomize_batchnorm(km, seed=2)
    c = convert_keras(km)
    assert c.model_overrides["bn_epsilon"] == 1e-3 and c.mean == (0.5, 0.5, 0.5)
    assert c.model_overrides["padding"] == "SAME"
    pixels = np.random.default_rng(3).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    got = _logits_equal(c, km, pixels * 2.0 - 1.0, pixels)  # Keras 'tf' preprocessing: [-1, 1]

    # The same from a .keras file through the command line, into a run directory.
    from jaxvision.training.checkpoints import load_run
    from tests.cli.commands import run_command

    km.save(str(tmp_path / "mnv2.keras"))
    out = str(tmp_path / "run")
    args = ("--source=keras", f"--input={tmp_path / 'mnv2.keras'}", f"--output={out}")
    proc = run_command("jaxvision.convert", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finetune.py" in proc.stdout
    run = load_run(out)
    np.testing.assert_allclose(_apply(run.model, run.variables, c.normalize(pixels)), got,
                               atol=1e-5)
    proc = run_command("jaxvision.convert", *args)  # the run directory exists: refused
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ")


def test_resnet50_parity():
    accepted = set(models.get_spec("resnet50").builder.__code__.co_varnames)
    if not accepted & {"stride_in_1x1", "stride_on_1x1", "v1"}:
        with pytest.raises(NotImplementedError, match="v1.5"):
            convert_keras(keras_application("resnet50", input_shape=(33, 33, 3), classes=3))
        pytest.skip(
            "jaxvision resnet50 has no ResNet-v1 (stride on 1x1) option yet; Keras ResNet50 is v1"
        )
    km = keras_application(
        "resnet50", input_shape=(33, 33, 3), classes=3, classifier_activation=None
    )
    _randomize_batchnorm(km, seed=4)
    c = convert_keras(km)
    pixels = np.random.default_rng(5).uniform(0, 1, (2, 33, 33, 3)).astype("float32")
    bgr = (pixels * 255.0 - np.array([123.68, 116.779, 103.939], "float32"))[
        ..., ::-1
    ]  # caffe mode
    _logits_equal(c, km, bgr, pixels)


def test_wrong_architecture_is_reported():
    km = keras_application("mobilenet_v2", input_shape=(33, 33, 3), classes=5, alpha=0.5)
    with pytest.raises(ValueError, match="do not fit"):
        convert_keras(km)
