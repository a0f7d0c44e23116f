"""Transformer layers against a numpy forward pass; scan == unrolled; remat == no remat."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from jaxvision.layers.transformer import (
    Encoder,
    EncoderBlock,
    MlpBlock,
    drop_path_rates,
    stack_encoder_params,
    unstack_encoder_params,
)


def np_gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def np_layer_norm(x, p, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_mlp(x, p):
    h = np_gelu(x @ p["fc1"]["kernel"] + p["fc1"]["bias"])
    return h @ p["fc2"]["kernel"] + p["fc2"]["bias"]


def np_attention(x, p):
    q, k, v = (
        np.einsum("ntc,chd->nthd", x, p[n]["kernel"]) + p[n]["bias"]
        for n in ("query", "key", "value")
    )
    logits = np.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(q.shape[-1])
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    y = np.einsum("nhqk,nkhd->nqhd", w, v)
    return np.einsum("nthd,hdc->ntc", y, p["out"]["kernel"]) + p["out"]["bias"]


def np_block(x, p):
    x = x + np_attention(np_layer_norm(x, p["norm1"]), p["attn"])
    return x + np_mlp(np_layer_norm(x, p["norm2"]), p["mlp"])


def _params(variables):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])


def _x(shape=(2, 5, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_mlp_block_equals_numpy():
    x = _x()
    module = MlpBlock(mlp_dim=32)
    variables = module.init(jax.random.key(0), x)
    out = module.apply(variables, x)
    chex.assert_trees_all_close(out, np_mlp(x, _params(variables)).astype(np.float32), atol=1e-5)


def test_encoder_block_equals_numpy():
    x = _x()
    module = EncoderBlock(num_heads=4, mlp_dim=32)
    variables = module.init(jax.random.key(0), x)
    # Non-trivial norm parameters so the LayerNorm affine part is exercised too.
    variables = jax.tree.map(
        lambda a: a + 0.1 * jax.random.normal(jax.random.key(a.size), a.shape), variables
    )
    out = module.apply(variables, x)
    chex.assert_trees_all_close(out, np_block(x, _params(variables)).astype(np.float32), atol=1e-4)


def test_encoder_equals_numpy_stack():
    x = _x()
    module = Encoder(num_layers=3, num_heads=2, mlp_dim=32)
    variables = module.init(jax.random.key(0), x)
    p = _params(variables)
    y = x.astype(np.float64)
    for i in range(3):
        y = np_block(y, p[f"block_{i}"])
    chex.assert_trees_all_close(
        module.apply(variables, x), np_layer_norm(y, p["norm"]).astype(np.float32), atol=1e-4
    )


def _loss_and_grads(module, params, x, **kw):
    def loss(p):
        return jnp.sum(module.apply({"params": p}, x, **kw) ** 2)

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("remat", [False, True])
def test_scan_equals_unrolled(remat):
    x = _x()
    kw = dict(num_layers=3, num_heads=2, mlp_dim=32)
    unrolled = Encoder(**kw)
    scanned = Encoder(scan_layers=True, remat=remat, **kw)
    params = unrolled.init(jax.random.key(0), x)["params"]
    scanned_shapes = jax.eval_shape(scanned.init, jax.random.key(0), x)["params"]
    mapped = stack_encoder_params({"encoder": params})["encoder"]
    chex.assert_trees_all_equal_shapes(mapped, scanned_shapes)
    assert set(mapped) == {"blocks", "norm"}
    chex.assert_shape(mapped["blocks"]["attn"]["query"]["kernel"], (3, 16, 2, 8))

    loss_u, grads_u = _loss_and_grads(unrolled, params, x)
    loss_s, grads_s = _loss_and_grads(scanned, mapped, x)
    chex.assert_trees_all_close(loss_s, loss_u, rtol=1e-5)
    chex.assert_trees_all_close(
        unstack_encoder_params({"encoder": grads_s})["encoder"], grads_u, atol=1e-4, rtol=1e-4
    )


def test_remat_equals_no_remat_in_training():
    # Same params, same rngs: remat only changes what is stored for the backward pass, so even
    # with dropout and drop path the outputs and gradients are identical. (Scanned + remat is
    # checked against the unrolled encoder in test_scan_equals_unrolled.)
    scan = False
    x = _x()
    kw = dict(
        num_layers=2,
        num_heads=2,
        mlp_dim=32,
        dropout_rate=0.1,
        drop_path_rate=0.3,
        scan_layers=scan,
    )
    plain, remat = Encoder(**kw), Encoder(remat=True, **kw)
    params = plain.init(jax.random.key(0), x)["params"]
    rngs = {"dropout": jax.random.key(1), "drop_path": jax.random.key(2)}
    train = dict(deterministic=False, rngs=rngs)
    loss_p, grads_p = _loss_and_grads(plain, params, x, **train)
    loss_r, grads_r = _loss_and_grads(remat, params, x, **train)
    chex.assert_trees_all_close(loss_r, loss_p, rtol=1e-6)
    chex.assert_trees_all_close(grads_r, grads_p, atol=1e-5, rtol=1e-5)
    # Training noise is really on: another rng gives another output.
    other = plain.apply(
        {"params": params},
        x,
        deterministic=False,
        rngs={"dropout": jax.random.key(3), "drop_path": jax.random.key(4)},
    )
    assert not np.allclose(other, plain.apply({"params": params}, x, **train))


def test_drop_path_is_per_example():
    # Identical examples: layer 0 has rate 0, layer 1 drops each of its two branches per example,
    # so the outputs take 2 to 4 distinct values (both branches kept, one, none).
    x = _x((1, 3, 8))
    rate = 0.5
    module = Encoder(num_layers=2, num_heads=2, mlp_dim=16, drop_path_rate=rate)
    np.testing.assert_allclose(drop_path_rates(rate, 2), [0.0, rate])
    variables = module.init(jax.random.key(0), x)
    xs = np.repeat(x, 64, axis=0)
    apply = jax.jit(module.apply, static_argnames="deterministic")
    out = apply(variables, xs, deterministic=False, rngs={"drop_path": jax.random.key(1)})
    eval_out = apply(variables, x)
    # Distinct per-example outputs: at most 4 patterns (layer 0 never drops).
    patterns = np.unique(np.round(np.asarray(out).reshape(len(xs), -1), 4), axis=0)
    assert 2 <= len(patterns) <= 4
    chex.assert_shape(out, xs.shape)
    # Evaluation is deterministic (no drop path rng needed).
    chex.assert_trees_all_equal(eval_out, apply(variables, x))


def test_unstack_roundtrip_and_scoping():
    x = _x()
    module = Encoder(num_layers=2, num_heads=2, mlp_dim=16, scan_layers=True)
    params = module.init(jax.random.key(0), x)["params"]
    tree = {"encoder": params, "backbone": {"block_0": {"w": np.ones(3)}}}
    unrolled = unstack_encoder_params(tree)
    assert set(unrolled["encoder"]) == {"block_0", "block_1", "norm"}
    # Only encoder subtrees are touched.
    assert set(unrolled["backbone"]) == {"block_0"}
    chex.assert_trees_all_equal(stack_encoder_params(unrolled)["encoder"], params)


def test_bf16_compute_float32_params():
    x = _x()
    module = Encoder(num_layers=2, num_heads=2, mlp_dim=32, dtype=jnp.bfloat16)
    variables = module.init(jax.random.key(0), x)
    out = module.apply(variables, x)
    assert out.dtype == jnp.bfloat16
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables))
    ref = Encoder(num_layers=2, num_heads=2, mlp_dim=32).apply(variables, x)
    chex.assert_trees_all_close(out.astype(jnp.float32), ref, atol=0.1)


def test_bad_drop_path_rate():
    with pytest.raises(ValueError, match="drop_path_rate"):
        Encoder(num_layers=1, num_heads=1, mlp_dim=4, drop_path_rate=1.0).init(
            jax.random.key(0), np.ones((1, 2, 4))
        )
