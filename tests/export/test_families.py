"""A non-trivial family: the CNN/Transformer hybrid (ResNet stages, then ViT attention) exports in each format, or fails with a clear error.

Reference: the pipeline's own ``preprocess.eval_transform`` (TF) then ``model.apply`` in JAX.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import export, models
from jaxvision.data import preprocess
from jaxvision.data._tf import tf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hybrid():
    model = models.create("hybrid_tiny_mnist", num_classes=4)
    r = preprocess.Resolved(28, 1, (0.13,), (0.31,), "center", 0, 0.875, False)
    variables = dict(jax.jit(lambda k: model.init(k, jnp.zeros((1, 28, 28, 1)), train=False))(
        jax.random.key(0)))
    servable = export.Servable(model, variables, ("a", "b", "c", "d"), r, None,
                               "hybrid_tiny_mnist", 0)
    images = np.random.default_rng(1).integers(0, 256, (5, 36, 30, 3), dtype=np.uint8)
    x = np.stack([preprocess.eval_transform(tf.constant(im), r).numpy() for im in images])
    ref = np.asarray(jax.nn.softmax(model.apply(variables, x, train=False), axis=-1))
    return servable, images, ref


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "stablehlo"])
def test_hybrid_float_formats(fmt, hybrid, tmp_path):
    servable, images, ref = hybrid
    path = str(tmp_path / "model")
    if fmt == "saved_model":
        export.export_saved_model(servable, path)
    else:
        blob = (export.export_stablehlo(servable, images.shape[1:3]) if fmt == "stablehlo"
                else export.export_tflite(servable, images.shape[1:3]))
        with open(path, "wb") as f:
            f.write(blob)
    got = export.load_exported(fmt, path)(images)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_hybrid_int8_runs_or_names_the_problem(hybrid, tmp_path):
    servable, images, ref = hybrid
    calibration = np.random.default_rng(2).integers(0, 256, (16, 36, 30, 3), dtype=np.uint8)
    try:
        blob = export.export_tflite(servable, images.shape[1:3], calibration=calibration)
    except export.ExportError as e:
        assert "TFLite" in str(e) and "--format=" in str(e)
        return
    path = tmp_path / "int8.tflite"
    path.write_bytes(blob)
    got = export.TFLiteRunner(str(path))(images)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 0.2


def test_unconvertible_op_is_named():
    from jaxvision.export.tflite import _unsupported_message

    servable = export.Servable(None, {}, ("a",), None, None, "resnet18", 0)
    message = ("loc(...): error: 'vhlo.dynamic_gather_v1' op is not part of the vhlo support yet."
               "\nerror: failed while converting: 'main'")
    text = _unsupported_message(servable, message)
    assert "op(s) vhlo.dynamic_gather_v1 of model 'resnet18'" in text
    assert "Custom ops: ScaleAndTranslate" not in text
    text = _unsupported_message(servable, "Some ops are not supported\nCustom ops: "
                                          "ScaleAndTranslate, Foo\nDetails: ...")
    assert "op(s) Foo, ScaleAndTranslate" in text
