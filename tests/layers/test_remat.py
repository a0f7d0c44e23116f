"""Rematerialization policies: same parameters, same values and gradients as no remat.

The reference is the same model without rematerialization: remat only changes what the backward
pass stores, so outputs, gradients and BatchNorm statistics must agree within float32 rounding and
the parameter tree (names, shapes) must not change (checkpoints and converters rely on it).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import config as config_lib
from jaxvision import models
from jaxvision.layers import REMAT_POLICIES, remat_policy_name
from tests.layers.onednn_testing import needs_onednn, one_device  # noqa: F401

TINY = {
    "vit_ti16": dict(num_layers=2, hidden_size=16, num_heads=2, mlp_dim=32, patch_size=8,
                     image_size=None, drop_path_rate=0.1, dropout_rate=0.1),
    "resnet18": dict(stage_sizes=(1, 1), width=4, drop_path_rate=0.1),  # BatchNorm
    "convnext_tiny": dict(dims=(8, 16), depths=(1, 1), drop_path_rate=0.1),
    "swin_t": dict(embed_dim=8, depths=(2,), num_heads=(2,), window_size=4, drop_path_rate=0.1),
    "r26_vit_s32": dict(stage_sizes=(1,), width=32, num_layers=1, hidden_size=16, num_heads=2,
                        mlp_dim=32, image_size=32),
}
# Gradients: one policy per family, for cost (tests/layers/test_transformer.py covers the
# encoder with remat=True = "full"); every family's parameter tree under every policy.
GRAD_POLICIES = {"vit_ti16": ("dots_saveable",), "resnet18": ("full",)}


def _loss_grads_stats(name, remat, x):
    model = models.create(name, num_classes=3, remat=remat, **TINY[name])
    variables = model.init(jax.random.key(0), x)
    # Perturbed: zero-initialised heads and last norms would zero most gradients.
    leaves, treedef = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(4), len(leaves))
    variables = {**variables, "params": jax.tree.unflatten(treedef, [
        p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)])}
    rngs = {"dropout": jax.random.key(1), "drop_path": jax.random.key(2)}

    @jax.jit
    def run(variables):
        def loss(params):
            logits, new = model.apply({**variables, "params": params}, x, train=True, rngs=rngs,
                                      mutable=["batch_stats"])
            return jnp.sum(jnp.sin(logits)), new  # a loss whose gradient reaches every logit

        return jax.value_and_grad(loss, has_aux=True)(variables["params"])

    (value, new_vars), grads = run(variables)
    return variables, value, grads, new_vars


@pytest.mark.parametrize("name", sorted(GRAD_POLICIES))
def test_remat_keeps_values_and_gradients(name):
    x = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
    _, ref_value, ref_grads, ref_stats = _loss_grads_stats(name, "none", x)
    assert all(np.abs(g).max() > 0 for g in jax.tree.leaves(ref_grads))  # not vacuous
    for policy in GRAD_POLICIES[name]:
        _, value, grads, stats = _loss_grads_stats(name, policy, x)
        np.testing.assert_allclose(value, ref_value, rtol=1e-6, atol=1e-6)
        for tree, ref in ((grads, ref_grads), (stats, ref_stats)):
            for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(ref), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{name} {policy}")


@pytest.mark.parametrize("name", sorted(TINY))
def test_remat_keeps_the_parameter_tree(name):
    """Same names, nesting and shapes under every policy: checkpoints and converters see one
    tree (abstract init: nothing is computed)."""
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)

    def tree(remat):
        model = models.create(name, num_classes=3, remat=remat, **TINY[name])
        return jax.tree.map(np.shape, jax.eval_shape(model.init, jax.random.key(0), x))

    ref = tree("none")
    for policy in ("full", "dots_saveable"):
        got = tree(policy)
        assert jax.tree.structure(got) == jax.tree.structure(ref)
        assert got == ref


@pytest.mark.parametrize("name", ["vit_ti16", "resnet18"])
def test_remat_keeps_less_for_the_backward_pass(name):
    """What the forward pass saves for the backward pass (abstract residual sizes, the same on
    every backend): 'full' keeps only block inputs, 'dots_saveable' adds matmul/conv outputs."""
    from benchmarks.remat import saved_bytes

    size = {p: saved_bytes(name, p, batch=2, res=32, **TINY[name]) for p in REMAT_POLICIES}
    assert size["full"] < size["dots_saveable"] < size["none"]


def test_policy_names():
    assert REMAT_POLICIES == ("none", "full", "dots_saveable")
    assert (remat_policy_name(True), remat_policy_name(False)) == ("full", "none")
    with pytest.raises(ValueError, match="remat='dots'.*'dots_saveable'"):
        remat_policy_name("dots")


@pytest.mark.parametrize("model, remat, message", [
    ("vit_s16", "ful", r"config.remat='ful' is not valid \(did you mean 'full'\?\)"),
    ("lenet5", "full", r"model 'lenet5' has no rematerialized blocks .*resnet.*vit"),
])
def test_config_refuses_bad_remat(model, remat, message):
    config = config_lib.from_flags("configs/mnist5k_lenet.py", [f"--config.model.name={model}",
                                                                f"--config.remat={remat}"])
    with pytest.raises(ValueError, match=message):
        config_lib.check(config)


@needs_onednn
@pytest.mark.usefixtures("one_device")
def test_dots_saveable_keeps_onednn_dense_products():
    # On the CPU the Dense products are oneDNN custom calls, which JAX's dot policies do not
    # see: 'dots_saveable' must still keep them (recompute none, where 'full' recomputes).
    x, y = jnp.zeros((2, 16, 16, 3)), jnp.asarray([0, 1])
    counts = {}
    for remat in ("none", "dots_saveable", "full"):
        model = models.create("vit_s16", remat=remat, hidden_size=16, num_layers=2, num_heads=2,
                              mlp_dim=24, patch_size=8, num_classes=3)
        params = model.init(jax.random.key(0), x)["params"]

        def loss(p, model=model):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        counts[remat] = jax.jit(jax.grad(loss)).lower(params).as_text().count(
            "jaxvision_onednn_matmul")
    assert counts["none"] < counts["full"]
    assert counts["dots_saveable"] == counts["none"], counts
