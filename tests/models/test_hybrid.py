"""ResNet + ViT hybrids: exact counts, the zoo's ResNet stages inside, weight standardization,
resolution changes, and a tiny ViT that learns on the bundled mnist5k (the tiny hybrid learns
in tests/cli/test_recipe_claims.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import models
from jaxvision.layers.conv import StdConv
from jaxvision.layers.norm import GroupNorm
from jaxvision.models.resnet import ResNetStages
from jaxvision.models.vit import VisionTransformer

# 1000 classes, 224 px. Source: google-research/vision_transformer vit_jax/models_test.py
# MODEL_SIZES ('R50+ViT-B_16', 'R26+ViT-S_32'); r50_vit_b16 also in
# shared/reference/param_counts.json.
PUBLISHED = {"r50_vit_b16": 98_659_112, "r26_vit_s32": 36_431_912}


def _abstract(name, res=224, **kw):
    return models.abstract_variables(models.create(name, **kw), (1, res, res, 3))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts(name):
    assert models.count_params(_abstract(name)["params"]) == PUBLISHED[name]
    assert models.model_info(name)["params"] == PUBLISHED[name]
    assert models.get_spec(name).family == "hybrid"


@pytest.mark.parametrize(
    "name, stages, grid, width",
    [("r50_vit_b16", (3, 4, 9), 14, 768), ("r26_vit_s32", (2, 2, 2, 2), 7, 384)],
)
def test_built_from_the_zoo_resnet_stages(name, stages, grid, width):
    model = models.create(name)
    # The hybrid's CNN is the CNN zoo's ResNetStages with StdConv + GroupNorm, not a copy.
    assert isinstance(model.backbone, ResNetStages)
    assert tuple(model.backbone.stage_sizes) == stages
    assert model.backbone.conv is StdConv
    assert model.backbone.norm.func is GroupNorm
    assert model.patch_size == 1
    params = _abstract(name)["params"]
    # 1x1 patches on the (224 / stride)^2 feature map, plus the class token.
    chex.assert_shape(params["pos_embed"]["embedding"], (1, grid * grid + 1, width))
    out_channels = 64 * 2 ** (len(stages) - 1) * 4
    chex.assert_shape(params["patch_embed"]["proj"]["kernel"], (1, 1, out_channels, width))
    # The ViT paper's units: StdConv kernels without bias, GroupNorm scale/bias.
    unit = params["backbone"]["stage1_block1"]
    assert set(unit["conv1"]) == {"kernel"}
    assert set(unit["norm1"]) == {"scale", "bias"}


def test_r50_hybrid_at_384_keeps_its_parameters():
    # Fine-tuning at 384 px: same parameter shapes (the 14x14 embedding is interpolated to 24x24).
    at224, at384 = _abstract("r50_vit_b16"), _abstract("r50_vit_b16", res=384)
    chex.assert_trees_all_equal_shapes(at224, at384)
    out = jax.eval_shape(
        models.create("r50_vit_b16", num_classes=5).apply,
        _abstract("r50_vit_b16", num_classes=5),
        jax.ShapeDtypeStruct((2, 384, 384, 3), jnp.float32),
    )
    chex.assert_shape(out, (2, 5))


def _digits(n=4, res=28, seed=0):
    return np.random.default_rng(seed).normal(size=(n, res, res, 1)).astype(np.float32)


def test_tiny_hybrid_shapes_and_weight_standardization():
    model = models.create("hybrid_tiny_mnist")
    assert models.get_spec("hybrid_tiny_mnist").in_channels == 1
    x = _digits()
    variables = jax.jit(model.init)(jax.random.key(0), x)
    apply = jax.jit(model.apply)
    # Zero-initialized head: every logit is 0 at initialization, a uniform start at ln(10) (the
    # hybrid's learning itself is checked by tests/cli/test_recipe_claims.py).
    np.testing.assert_array_equal(np.asarray(apply(variables, x)), 0.0)
    variables = jax.tree.map(lambda a: a + 0.01, variables)  # non-zero head
    logits = apply(variables, x)
    chex.assert_shape(logits, (4, 10))
    # Weight standardization + GroupNorm: scaling every backbone kernel by a positive constant
    # changes nothing (up to the eps of the standardization).
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, a: a * 5.0 if "backbone" in str(path) and "kernel" in str(path) else a,
        variables,
    )
    chex.assert_trees_all_close(apply(scaled, x), logits, atol=1e-4)
    # A different resolution (36 px -> 9x9 tokens instead of 7x7) works with the same params.
    chex.assert_shape(apply(variables, _digits(2, 36)), (2, 10))
    feats = models.create("hybrid_tiny_mnist", num_classes=0)
    chex.assert_shape(
        jax.jit(feats.apply)(
            {"params": {k: v for k, v in variables["params"].items() if k != "head"}}, x
        ),
        (4, 64),
    )


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory):
    """40 training batches of 64 from jaxvision.data's bundled mnist5k (built offline)."""
    from jaxvision import data

    config = data.default_config()
    config.name = "mnist5k"
    config.data_dir = str(tmp_path_factory.mktemp("tfds"))
    pipe = data.build(config, "train", global_batch_size=64, train=True, seed=0)
    it = iter(pipe)
    return [next(it) for _ in range(40)]


def _tiny_vit(num_classes):
    return VisionTransformer(
        num_classes=num_classes,
        patch_size=7,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        mlp_dim=128,
        image_size=28,
    )


@pytest.mark.slow
def test_tiny_vit_learns_on_mnist5k(mnist5k):
    # The tiny hybrid is not trained here: tests/cli/test_recipe_claims.py trains the same model
    # (hybrid_tiny_mnist) on the same data through configs/mnist5k_hybrid.py and asserts its
    # stated test top-1 (95.6%) and a falling training loss, which is more than a 40-step loss
    # drop shows. Its zero-initialized head is checked without training in
    # test_tiny_hybrid_shapes_and_weight_standardization.
    _learns(mnist5k, "tiny_vit")


def _learns(mnist5k, name):
    model = _tiny_vit(10)
    variables = model.init(jax.random.key(0), mnist5k[0]["image"][:1])
    tx = optax.adamw(3e-3, weight_decay=1e-4)
    params, opt_state = variables["params"], tx.init(variables["params"])

    @jax.jit
    def step(params, opt_state, batch):
        def loss_fn(p):
            logits = model.apply({"params": p}, batch["image"], train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for batch in mnist5k:
        params, opt_state, loss = step(params, opt_state, batch)
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert abs(losses[0] - np.log(10)) < 0.3  # zero-initialized head: uniform start
    # ViTs start slowly: 40 steps take the loss from ln(10) = 2.30 to about 1.9.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.25, (name, losses)
