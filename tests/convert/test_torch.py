"""PyTorch state dicts -> jaxvision: same logits (1e-4) as the PyTorch model holding the weights.

The references are written here with plain torch.nn in torchvision's ResNet and timm's ViT
structure (so the state-dict names are theirs); torchvision/timm themselves are not needed.
"""

import chex
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch to run)")
nn = torch.nn

from jaxvision.convert import convert, save_converted  # noqa: E402
from jaxvision.convert.torch import convert_torch  # noqa: E402


class Bottleneck(nn.Module):  # torchvision v1.5: stride on conv2
    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, width * 4, 1, bias=False), nn.BatchNorm2d(width * 4)
        self.downsample = None
        if stride != 1 or cin != width * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchResNet50(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, layers = 64, []
        for i, n in enumerate((3, 4, 6, 3)):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, 64 * 2**i, 2 if (i > 0 and j == 0) else 1))
                cin = 64 * 2**i * 4
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


class Attention(nn.Module):  # timm: fused qkv
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(d, eps=1e-6), Attention(d, heads)
        self.norm2, self.mlp = nn.LayerNorm(d, eps=1e-6), Mlp(d, 4 * d)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchViT(nn.Module):  # timm VisionTransformer layout, class-token pooling
    def __init__(self, d=192, depth=12, heads=3, patch=16, img=32, num_classes=5):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (img // patch) ** 2, d) * 0.02)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d, eps=1e-6), nn.Linear(d, num_classes)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _compare(converted, torch_model, pixels):
    mean, std = np.array(converted.mean, "float32"), np.array(converted.std, "float32")
    with torch.no_grad():
        ref = torch_model(
            torch.from_numpy(((pixels - mean) / std).transpose(0, 3, 1, 2).copy())
        ).numpy()
    got = np.asarray(
        converted.create_model().apply(
            converted.variables, converted.normalize(pixels), train=False
        )
    )
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert np.abs(ref).max() > 1e-2


def test_resnet50_state_dict_via_safetensors_and_pt(tmp_path):
    torch.manual_seed(0)
    model = TorchResNet50(num_classes=6).eval()
    with torch.no_grad():
        _randomize_bn(model)
    sd = model.state_dict()
    save_file = pytest.importorskip(
        "safetensors.torch", reason="safetensors is not installed"
    ).save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "r50.safetensors"))
    torch.save({"state_dict": sd}, str(tmp_path / "r50.pt"))
    pixels = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    c = convert("torch", str(tmp_path / "r50.safetensors"), "resnet50")
    assert c.num_classes == 6 and c.mean == (0.485, 0.456, 0.406)
    _compare(c, model, pixels)
    c2 = convert_torch(str(tmp_path / "r50.pt"), "resnet50")  # torch.load(weights_only=True)
    chex.assert_trees_all_equal(c.variables, c2.variables)
    out = save_converted(c, str(tmp_path / "run"))
    from jaxvision.training.checkpoints import load_pretrained

    pre, meta = load_pretrained(out)
    assert meta["model"] == "resnet50" and pre["params"]["head"]["kernel"].shape == (2048, 6)


def test_vit_state_dict_with_fused_qkv():
    torch.manual_seed(1)
    model = TorchViT().eval()
    c = convert_torch(model.state_dict(), "vit_ti16")
    assert c.model_overrides == {"image_size": 32} and c.image_shape == (32, 32, 3)
    _compare(c, model, np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype("float32"))


def test_wrong_model_is_reported():
    with pytest.raises(ValueError, match="do not fit|unmapped"):
        convert_torch(TorchResNet50(num_classes=3).state_dict(), "resnet101")


def _paper_npz(model, depth, d=192, h=3):
    """The torch ViT's weights in the ViT paper's .npz layout (Flax names, (D, heads, head_dim))."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    npz = {
        "cls": sd["cls_token"],
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    for i in range(depth):
        p, t = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        for ln, src in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            npz[p + ln + "/scale"], npz[p + ln + "/bias"] = (
                sd[t + src + ".weight"],
                sd[t + src + ".bias"],
            )
        a = p + "MultiHeadDotProductAttention_1/"
        for j, name in enumerate(("query", "key", "value")):
            npz[a + name + "/kernel"] = sd[t + "attn.qkv.weight"][j * d : (j + 1) * d].T.reshape(
                d, h, d // h
            )
            npz[a + name + "/bias"] = sd[t + "attn.qkv.bias"][j * d : (j + 1) * d].reshape(
                h, d // h
            )
        npz[a + "out/kernel"] = sd[t + "attn.proj.weight"].T.reshape(h, d // h, d)
        npz[a + "out/bias"] = sd[t + "attn.proj.bias"]
        for k in (0, 1):
            npz[p + f"MlpBlock_3/Dense_{k}/kernel"] = sd[t + f"mlp.fc{k + 1}.weight"].T
            npz[p + f"MlpBlock_3/Dense_{k}/bias"] = sd[t + f"mlp.fc{k + 1}.bias"]
    return npz


def test_vit_paper_npz_matches_the_torch_model(tmp_path):
    from jaxvision.convert.vit_npz import convert_vit_npz

    torch.manual_seed(2)
    short = TorchViT(depth=2).eval()
    np.savez(tmp_path / "vit2.npz", **_paper_npz(short, 2))
    with pytest.raises(ValueError, match="missing params/encoder/block_"):  # vit_ti16 has 12 layers
        convert("npz", str(tmp_path / "vit2.npz"), "vit_ti16")
    torch.manual_seed(3)
    model = TorchViT().eval()
    np.savez(tmp_path / "vit12.npz", **_paper_npz(model, 12))
    n = convert_vit_npz(str(tmp_path / "vit12.npz"))  # name guessed from the shapes
    assert (
        n.model_name == "vit_ti16"
        and n.model_overrides == {"image_size": 32}
        and n.std == (0.5,) * 3
    )
    _compare(n, model, np.random.default_rng(4).uniform(0, 1, (2, 32, 32, 3)).astype("float32"))
    chex.assert_trees_all_equal(
        n.variables, convert_torch(model.state_dict(), "vit_ti16").variables
    )
