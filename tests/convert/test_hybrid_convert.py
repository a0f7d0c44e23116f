"""ViT-paper ``.npz`` checkpoints of the hybrids (R50+ViT-B/16, R26+ViT-S/32) -> jaxvision.

The npz is written here with the exact key names and shapes of google-research/vision_transformer
(``vit_jax/models_vit.py``: ``conv_root``, ``gn_root``, ``block{s}`` stages of ``unit{u}``,
``embedding``, ``cls``, ``Transformer/...``, ``head``; ``vit_jax/models_resnet.py``:
``conv{1,2,3}``, ``gn{1,2,3}``, ``conv_proj``, ``gn_proj``), derived from that repository's
architecture, not from the converter's table.
"""

import re

import chex
import jax
import numpy as np
import pytest
from flax import traverse_util

from jaxvision import models
from jaxvision.convert.torch import convert_torch
from jaxvision.convert.vit_npz import convert_vit_npz

# R26+ViT-S/32 (ViT paper): ResNet num_layers (2, 2, 2, 2), width 64; ViT-S: D 384, 12 layers,
# 6 heads, MLP 1536. 64 px -> 2x2 tokens (output stride 32), + class token.
STAGES, WIDTH = (2, 2, 2, 2), 64
D, DEPTH, HEADS, MLP = 384, 12, 6, 1536
NUM_CLASSES, RES = 10, 64


def reference_npz(rng: np.random.Generator) -> tuple[dict, dict]:
    """(npz arrays under the paper's flat names, {npz name: jaxvision param path})."""
    arrays, table = {}, {}

    def add(npz_key, shape, jv_path):
        arrays[npz_key] = rng.standard_normal(shape).astype(np.float32)
        table[npz_key] = jv_path

    add("conv_root/kernel", (7, 7, 3, WIDTH), "backbone/stem_conv/kernel")
    for leaf in ("scale", "bias"):
        add(f"gn_root/{leaf}", (WIDTH,), f"backbone/stem_norm/{leaf}")
    cin = WIDTH
    for s, units in enumerate(STAGES, 1):
        nout = WIDTH * 2 ** (s - 1)
        for u in range(1, units + 1):
            src, dst = f"block{s}/unit{u}", f"backbone/stage{s}_block{u}"
            # ResidualUnit: conv1 1x1 (nout), conv2 3x3 (nout), conv3 1x1 (4 nout); projection
            # when the input width differs from 4 nout or the unit strides (every unit1 here).
            convs = {1: (1, 1, cin, nout), 2: (3, 3, nout, nout), 3: (1, 1, nout, 4 * nout)}
            for k, shape in convs.items():
                add(f"{src}/conv{k}/kernel", shape, f"{dst}/conv{k}/kernel")
                for leaf in ("scale", "bias"):
                    add(f"{src}/gn{k}/{leaf}", (shape[-1],), f"{dst}/norm{k}/{leaf}")
            if u == 1:
                add(f"{src}/conv_proj/kernel", (1, 1, cin, 4 * nout), f"{dst}/downsample_conv/kernel")
                for leaf in ("scale", "bias"):
                    add(f"{src}/gn_proj/{leaf}", (4 * nout,), f"{dst}/downsample_norm/{leaf}")
            cin = 4 * nout
    add("embedding/kernel", (1, 1, cin, D), "patch_embed/proj/kernel")
    add("embedding/bias", (D,), "patch_embed/proj/bias")
    add("cls", (1, 1, D), "cls/cls")
    tokens = 1 + (RES // 32) ** 2
    add("Transformer/posembed_input/pos_embedding", (1, tokens, D), "pos_embed/embedding")
    hd = D // HEADS
    for i in range(DEPTH):
        src, dst = f"Transformer/encoderblock_{i}", f"encoder/block_{i}"
        for ln, jv in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            for leaf in ("scale", "bias"):
                add(f"{src}/{ln}/{leaf}", (D,), f"{dst}/{jv}/{leaf}")
        att = f"{src}/MultiHeadDotProductAttention_1"
        for p in ("query", "key", "value"):  # flax DenseGeneral: (D, heads, head_dim)
            add(f"{att}/{p}/kernel", (D, HEADS, hd), f"{dst}/attn/{p}/kernel")
            add(f"{att}/{p}/bias", (HEADS, hd), f"{dst}/attn/{p}/bias")
        add(f"{att}/out/kernel", (HEADS, hd, D), f"{dst}/attn/out/kernel")
        add(f"{att}/out/bias", (D,), f"{dst}/attn/out/bias")
        add(f"{src}/MlpBlock_3/Dense_0/kernel", (D, MLP), f"{dst}/mlp/fc1/kernel")
        add(f"{src}/MlpBlock_3/Dense_0/bias", (MLP,), f"{dst}/mlp/fc1/bias")
        add(f"{src}/MlpBlock_3/Dense_1/kernel", (MLP, D), f"{dst}/mlp/fc2/kernel")
        add(f"{src}/MlpBlock_3/Dense_1/bias", (D,), f"{dst}/mlp/fc2/bias")
    for leaf in ("scale", "bias"):
        add(f"Transformer/encoder_norm/{leaf}", (D,), f"encoder/norm/{leaf}")
    add("head/kernel", (D, NUM_CLASSES), "head/kernel")
    add("head/bias", (NUM_CLASSES,), "head/bias")
    return arrays, table


@pytest.fixture(scope="module")
def npz_and_converted(tmp_path_factory):
    arrays, table = reference_npz(np.random.default_rng(0))
    path = tmp_path_factory.mktemp("hybrid") / "R26+ViT-S_32.npz"
    np.savez(path, **arrays)
    return arrays, table, convert_vit_npz(path)  # model name guessed from the shapes


def test_hybrid_npz_every_key_maps_to_its_param(npz_and_converted):
    arrays, table, conv = npz_and_converted
    assert conv.model_name == "r26_vit_s32"
    assert conv.num_classes == NUM_CLASSES
    assert conv.image_shape == (RES, RES, 3)
    assert conv.model_overrides == {"image_size": RES}
    assert conv.mean == conv.std == (0.5, 0.5, 0.5)
    got = traverse_util.flatten_dict(conv.variables["params"], sep="/")
    # One-to-one: every npz key is consumed and every jaxvision param comes from the npz.
    assert len(set(table.values())) == len(table)
    assert set(got) == set(table.values())
    model = conv.create_model()
    want = models.abstract_variables(model, (1, RES, RES, 3))
    want = traverse_util.flatten_dict(dict(want["params"]), sep="/")
    assert set(want) == set(got)
    for key, jv in table.items():
        assert got[jv].shape == want[jv].shape, jv
        np.testing.assert_array_equal(got[jv], arrays[key], err_msg=f"{key} -> {jv}")
    # Spot checks written out in full: attention kernels (D, heads, head_dim), the root conv and
    # a projection conv of a strided stage.
    att = "Transformer/encoderblock_3/MultiHeadDotProductAttention_1"
    np.testing.assert_array_equal(got["encoder/block_3/attn/query/kernel"], arrays[f"{att}/query/kernel"])
    assert got["encoder/block_3/attn/value/kernel"].shape == (D, HEADS, D // HEADS)
    np.testing.assert_array_equal(got["encoder/block_3/attn/out/kernel"], arrays[f"{att}/out/kernel"])
    np.testing.assert_array_equal(got["backbone/stem_conv/kernel"], arrays["conv_root/kernel"])
    np.testing.assert_array_equal(
        got["backbone/stage3_block1/downsample_conv/kernel"], arrays["block3/unit1/conv_proj/kernel"]
    )
    np.testing.assert_array_equal(
        got["backbone/stage2_block2/norm3/scale"], arrays["block2/unit2/gn3/scale"]
    )


def test_hybrid_npz_forward(npz_and_converted):
    _, _, conv = npz_and_converted
    model = conv.create_model()
    x = conv.normalize(np.random.default_rng(1).uniform(size=(2, RES, RES, 3)))
    # One compiled program (op by op, each convolution and matmul would be compiled on its own).
    logits = jax.jit(lambda v, im: model.apply(v, im, train=False))(conv.variables, x)
    chex.assert_shape(logits, (2, NUM_CLASSES))
    chex.assert_tree_all_finite(logits)
    # Different images give different logits (the weights reach the output).
    assert not np.allclose(logits[0], logits[1])


def test_hybrid_npz_rejects_unknown_and_missing_keys():
    arrays, _ = reference_npz(np.random.default_rng(2))
    extra = dict(arrays, **{"block9/unit1/conv1/kernel": np.zeros((1, 1, 8, 8), np.float32)})
    with pytest.raises(ValueError, match="unexpected params/backbone/stage9_block1/conv1/kernel"):
        convert_vit_npz(extra, "r26_vit_s32")
    stray = dict(arrays, **{"Transformer/encoderblock_0/Adapter/kernel": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="left unmapped.*encoderblock_0/Adapter/kernel"):
        convert_vit_npz(stray, "r26_vit_s32")
    missing = dict(arrays)
    del missing["Transformer/encoderblock_5/MlpBlock_3/Dense_1/kernel"]
    with pytest.raises(ValueError, match="encoderblock_5/MlpBlock_3/Dense_1"):
        convert_vit_npz(missing, "r26_vit_s32")


# --- timm (PyTorch) state dicts: vit_base_r50_s16_224 naming (timm vision_transformer_hybrid.py +
# resnetv2.py: ResNetV2(preact=False) under ``patch_embed.backbone``, Bottleneck
# conv1/norm1..conv3/norm3, DownsampleConv ``downsample.conv``/``downsample.norm``, GroupNormAct
# ``weight``/``bias``; then ViT ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{k}``
# with fused ``attn.qkv``, ``norm``, ``head``).


def to_timm(params: dict) -> dict:
    """Independent inverse: flat jaxvision hybrid params -> timm state dict (numpy)."""
    flat = traverse_util.flatten_dict(params, sep="/")
    sd = {}

    def conv(k):  # (kh, kw, in, out) -> (out, in, kh, kw)
        return flat[k].transpose(3, 2, 0, 1)

    bb = "patch_embed.backbone"
    for key in flat:
        if m := re.fullmatch(r"backbone/stem_conv/kernel", key):
            sd[f"{bb}.stem.conv.weight"] = conv(key)
        elif m := re.fullmatch(r"backbone/stem_norm/(scale|bias)", key):
            sd[f"{bb}.stem.norm.{TORCH_LEAF[m[1]]}"] = flat[key]
        elif m := re.fullmatch(r"backbone/stage(\d+)_block(\d+)/(\w+)/(\w+)", key):
            s, u, layer, leaf = int(m[1]) - 1, int(m[2]) - 1, m[3], m[4]
            name = {"downsample_conv": "downsample.conv", "downsample_norm": "downsample.norm"}.get(
                layer, layer
            )
            value = conv(key) if leaf == "kernel" else flat[key]
            sd[f"{bb}.stages.{s}.blocks.{u}.{name}.{TORCH_LEAF[leaf]}"] = value
    sd["patch_embed.proj.weight"] = conv("patch_embed/proj/kernel")
    sd["patch_embed.proj.bias"] = flat["patch_embed/proj/bias"]
    sd["cls_token"] = flat["cls/cls"]
    sd["pos_embed"] = flat["pos_embed/embedding"]
    for i in range(DEPTH):
        a, t = f"encoder/block_{i}", f"blocks.{i}"
        for n in ("norm1", "norm2"):
            sd[f"{t}.{n}.weight"], sd[f"{t}.{n}.bias"] = flat[f"{a}/{n}/scale"], flat[f"{a}/{n}/bias"]
        sd[f"{t}.attn.qkv.weight"] = np.concatenate(
            [flat[f"{a}/attn/{p}/kernel"].reshape(D, D).T for p in ("query", "key", "value")]
        )
        sd[f"{t}.attn.qkv.bias"] = np.concatenate(
            [flat[f"{a}/attn/{p}/bias"].reshape(D) for p in ("query", "key", "value")]
        )
        sd[f"{t}.attn.proj.weight"] = flat[f"{a}/attn/out/kernel"].reshape(D, D).T
        sd[f"{t}.attn.proj.bias"] = flat[f"{a}/attn/out/bias"]
        for n in ("fc1", "fc2"):
            sd[f"{t}.mlp.{n}.weight"] = flat[f"{a}/mlp/{n}/kernel"].T
            sd[f"{t}.mlp.{n}.bias"] = flat[f"{a}/mlp/{n}/bias"]
    sd["norm.weight"], sd["norm.bias"] = flat["encoder/norm/scale"], flat["encoder/norm/bias"]
    sd["head.weight"], sd["head.bias"] = flat["head/kernel"].T, flat["head/bias"]
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


TORCH_LEAF = {"scale": "weight", "bias": "bias", "kernel": "weight"}


@pytest.fixture(scope="module")
def jaxvision_params():
    """Random values in the shapes of r26_vit_s32 (64 px, 10 classes) params."""
    model = models.create("r26_vit_s32", num_classes=NUM_CLASSES, image_size=RES)
    shapes = models.abstract_variables(model, (1, RES, RES, 3))["params"]
    rng = np.random.default_rng(3)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), dict(shapes))


def _assert_round_trip(params, conv):
    assert conv.model_name == "r26_vit_s32"
    assert conv.num_classes == NUM_CLASSES
    # timm's ResNetV2 standardizes weights as timm does (issue 16), recorded for the run.
    assert conv.model_overrides == {"image_size": RES, "weight_standardization": "timm"}
    assert conv.image_shape == (RES, RES, 3)
    assert conv.mean == conv.std == (0.5, 0.5, 0.5)
    got = traverse_util.flatten_dict(conv.variables["params"], sep="/")
    want = traverse_util.flatten_dict(params, sep="/")
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_hybrid_timm_names_round_trip_numpy(jaxvision_params):
    sd = to_timm(jaxvision_params)
    assert "patch_embed.backbone.stages.3.blocks.0.downsample.conv.weight" in sd
    assert sd["blocks.0.attn.qkv.weight"].shape == (3 * D, D)
    _assert_round_trip(jaxvision_params, convert_torch(sd, "r26_vit_s32"))
    stray = dict(sd, **{"patch_embed.backbone.norm.weight": np.ones(4 * 512, np.float32)})
    with pytest.raises(ValueError, match="left unmapped.*patch_embed.backbone.norm.weight"):
        convert_torch(stray, "r26_vit_s32")


def test_hybrid_timm_names_round_trip_torch_safetensors(jaxvision_params, tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors not installed")
    sd = {k: torch.from_numpy(v) for k, v in to_timm(jaxvision_params).items()}
    _assert_round_trip(jaxvision_params, convert_torch(sd, "r26_vit_s32"))
    path = tmp_path / "vit_small_r26_s32.safetensors"
    safetensors_torch.save_file(sd, str(path))
    _assert_round_trip(jaxvision_params, convert_torch(str(path), "r26_vit_s32"))
