import chex
import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxvision.explain import attention_rollout, token_gradcam
from jaxvision.explain.vit import _attention_weights, token_grid
from jaxvision.layers.attention import MultiHeadSelfAttention

vit_mod = pytest.importorskip("jaxvision.models.vit")


def _tiny_vit(**kw):
    return vit_mod.VisionTransformer(
        num_classes=3,
        patch_size=4,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        mlp_dim=32,
        image_size=16,
        **kw,
    )


def test_recomputed_attention_weights_reproduce_the_module_output():
    m = MultiHeadSelfAttention(num_heads=2)
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    v = m.init(jax.random.key(1), x)
    captured = []

    def grab(next_fun, args, kwargs, context):
        if isinstance(context.module, MultiHeadSelfAttention) and context.method_name == "__call__":
            captured.append(_attention_weights(context.module, args[0]))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(grab):
        out = m.apply(v, x)
    w = np.asarray(captured[0])  # (N, H, T, T)
    p = jax.tree.map(np.asarray, v["params"])
    value = np.einsum("ntd,dhk->nthk", np.asarray(x), p["value"]["kernel"]) + p["value"]["bias"]
    mixed = np.einsum("nhqk,nkhd->nqhd", w, value)
    out_name = [k for k in p if k not in ("query", "key", "value")][0]
    want = np.einsum("nqhd,hdo->nqo", mixed, p[out_name]["kernel"]) + p[out_name]["bias"]
    chex.assert_trees_all_close(np.asarray(out), want, atol=1e-5)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)


def test_rollout_and_token_gradcam_on_a_tiny_vit():
    model = _tiny_vit()
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    v = jax.jit(model.init)(jax.random.key(1), x)
    v = jax.tree.map(
        lambda a: a + 0.05 * jax.random.normal(jax.random.key(2), a.shape), v
    )  # non-zero head
    heat, logits = attention_rollout(model, v, x)
    chex.assert_shape(heat, (2, 16, 16))
    chex.assert_trees_all_close(logits, jax.jit(model.apply)(v, x), atol=1e-5)
    assert float(heat.min()) >= 0 and abs(float(heat.max()) - 1) < 1e-5
    cam, _, layer = token_gradcam(model, v, x)
    assert layer == "encoder/block_0"  # input of the last block
    chex.assert_shape(cam, (2, 16, 16))
    # The scanned layout explains identically (unrolled internally).
    from jaxvision.layers.transformer import stack_encoder_params

    scanned = _tiny_vit(scan_layers=True)
    heat2, _ = attention_rollout(scanned, {"params": stack_encoder_params(dict(v["params"]))}, x)
    chex.assert_trees_all_close(heat2, heat, atol=1e-5)


def test_token_grid():
    assert token_grid(197, (224, 224)) == (1, 14, 14)
    assert token_grid(196, (224, 224)) == (0, 14, 14)
    assert token_grid(1 + 8 * 4, (64, 32)) == (1, 8, 4)
