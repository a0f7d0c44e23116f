"""PyTorch MobileNetV2 / EfficientNet state dicts -> jaxvision: same logits (1e-4) as the torch model.

The references are plain torch.nn modules built with torchvision's exact structure (so the
state-dict names are torchvision's: ``features.*``, ``block.*``, ``fc1``/``fc2``, ``classifier.1``)
and symmetric padding ``(k - 1) // 2``; torchvision itself is not needed. Even input sizes (32 px,
as torchvision's 224) are where TF-"SAME" pads asymmetrically before stride-2 convs, so the
padding convention is really tested.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch to run)")
nn = torch.nn

from jaxvision.convert import convert  # noqa: E402
from jaxvision.convert.torch import convert_torch  # noqa: E402
from jaxvision.models.efficientnet import round_filters, round_repeats  # noqa: E402
from jaxvision.models.mobilenet_v2 import make_divisible  # noqa: E402


class ConvBNAct(nn.Sequential):  # torchvision.ops.Conv2dNormActivation: 0 = conv, 1 = BN, 2 = act
    def __init__(self, cin, cout, k=3, stride=1, groups=1, act=nn.ReLU6):
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([act()] if act else []))


class InvertedResidual(nn.Module):  # torchvision.models.mobilenetv2.InvertedResidual
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = int(round(cin * t))
        self.use_res = stride == 1 and cin == cout
        layers = [ConvBNAct(cin, hidden, 1)] if t != 1 else []
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class TorchMobileNetV2(nn.Module):
    def __init__(self, width=1.0, num_classes=10):
        super().__init__()
        cin = make_divisible(32 * width)
        feats = [ConvBNAct(3, cin, 3, 2)]
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
            for i in range(n):
                feats.append(InvertedResidual(cin, make_divisible(c * width), s if i == 0 else 1, t))
                cin = make_divisible(c * width)
        last = make_divisible(1280 * max(1.0, width))
        feats.append(ConvBNAct(cin, last, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class SqueezeExcitation(nn.Module):  # torchvision.ops.SqueezeExcitation
    def __init__(self, c, squeeze):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = self.fc2(nn.functional.silu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class MBConv(nn.Module):  # torchvision.models.efficientnet.MBConv (eval: no stochastic depth)
    def __init__(self, cin, cout, k, stride, t):
        super().__init__()
        hidden = cin * t
        self.use_res = stride == 1 and cin == cout
        layers = [ConvBNAct(cin, hidden, 1, act=nn.SiLU)] if t != 1 else []
        layers += [ConvBNAct(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, cin // 4)),
                   ConvBNAct(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.use_res else self.block(x)


class TorchEfficientNetB0(nn.Module):  # torchvision.models.EfficientNet (B0 by default)
    def __init__(self, num_classes=10, width=1.0, depth=1.0):
        super().__init__()
        cin = round_filters(32, width)
        feats = [ConvBNAct(3, cin, 3, 2, act=nn.SiLU)]
        for t, k, s, c, n in ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2),
                              (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                              (6, 3, 1, 320, 1)):
            c = round_filters(c, width)
            stage = []
            for i in range(round_repeats(n, depth)):
                stage.append(MBConv(cin, c, k, s if i == 0 else 1, t))
                cin = c
            feats.append(nn.Sequential(*stage))
        feats.append(ConvBNAct(cin, 4 * cin, 1, act=nn.SiLU))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * cin, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


def _randomized(model, seed):
    """Eval-mode model with random BatchNorm affine parameters and running statistics, and a
    classifier scaled up so the logits are O(1) (the default init gives ~0.05: too small for a
    1e-4 comparison to mean anything)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=g) * 0.1)
            elif isinstance(mod, nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 2.0)
    return model.eval()


def _logits(converted, model, size, seed):
    """(jaxvision logits, torch logits) on the same random batch of 2 images."""
    pixels = np.random.default_rng(seed).uniform(0, 1, (2, size, size, 3)).astype("float32")
    x = converted.normalize(pixels)
    with torch.no_grad():
        ref = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    got = np.asarray(converted.create_model().apply(converted.variables, x, train=False))
    assert got.shape == ref.shape == (2, converted.num_classes) and np.abs(ref).max() > 0.5
    return got, ref


def test_mobilenet_v2_half_width_via_safetensors(tmp_path):
    save_file = pytest.importorskip(
        "safetensors.torch", reason="safetensors is not installed"
    ).save_file
    torch.manual_seed(0)
    model = _randomized(TorchMobileNetV2(width=0.5, num_classes=7), 0)
    path = str(tmp_path / "mnv2.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    c = convert("torch", path, "mobilenet_v2")
    assert c.num_classes == 7 and c.mean == (0.485, 0.456, 0.406)
    assert c.model_overrides == {"padding": "SYMMETRIC", "bn_epsilon": 1e-5, "bn_momentum": 0.9,
                                 "width_multiplier": 0.5}
    dw = c.variables["params"]["block2"]["dw"]["conv"]["kernel"]  # depthwise (3, 3, 1, C)
    sd_dw = model.state_dict()["features.2.conv.1.0.weight"].numpy()  # (C, 1, 3, 3)
    np.testing.assert_array_equal(dw, sd_dw.transpose(2, 3, 1, 0))
    np.testing.assert_allclose(*_logits(c, model, 32, 0), atol=1e-4, rtol=1e-4)


def test_efficientnet_b0_torchvision_names_symmetric_padding():
    torch.manual_seed(1)
    model = _randomized(TorchEfficientNetB0(num_classes=5), 1)
    c = convert_torch(model.state_dict(), "efficientnet_b0")
    assert c.model_overrides == {"padding": "SYMMETRIC", "bn_epsilon": 1e-5, "bn_momentum": 0.9}
    np.testing.assert_allclose(*_logits(c, model, 32, 1), atol=1e-4, rtol=1e-4)
    # With TF-"SAME" padding (jaxvision's default) the same weights give other logits at 32 px
    # (measured: 1.6e-3 apart, against 4e-6 with symmetric padding).
    c.model_overrides["padding"] = "SAME"
    got, ref = _logits(c, model, 32, 1)
    assert np.abs(got - ref).max() > 1e-3


def test_efficientnet_b5_torchvision_batchnorm_and_shapes():
    # torchvision's B5..B7 (ported TF weights) use BatchNorm eps 1e-3, momentum 0.01.
    sd = TorchEfficientNetB0(num_classes=4, width=1.6, depth=2.2).state_dict()
    c = convert_torch(sd, "efficientnet_b5")  # every shape checked against the jaxvision model
    assert c.model_overrides == {"padding": "SYMMETRIC", "bn_epsilon": 1e-3, "bn_momentum": 0.99}
    np.testing.assert_array_equal(c.variables["params"]["head"]["kernel"],
                                  sd["classifier.1.weight"].numpy().T)


def test_mobile_wrong_architecture_is_reported():
    sd = TorchMobileNetV2(width=0.5, num_classes=3).state_dict()
    with pytest.raises(ValueError, match="efficientnet_b0|no 'features|unmapped|do not fit"):
        convert_torch(sd, "efficientnet_b0")
    sd = TorchEfficientNetB0(num_classes=3).state_dict()
    with pytest.raises(ValueError, match="do not fit|unmapped|no 'features"):
        convert_torch(sd, "efficientnet_b1")  # B1 has more blocks than B0


_MNV2_REPEATS = (1, 2, 3, 4, 3, 3, 1)
_TIMM_IR = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
            "conv.2": "conv_pwl", "conv.3": "bn3"}
_TIMM_DS = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_TIMM_MB = {"block.0.0": "conv_pw", "block.0.1": "bn1", "block.1.0": "conv_dw", "block.1.1": "bn2",
            "block.2.fc1": "se.conv_reduce", "block.2.fc2": "se.conv_expand",
            "block.3.0": "conv_pwl", "block.3.1": "bn3"}
_TIMM_MB_DS = {"block.0.0": "conv_dw", "block.0.1": "bn1", "block.1.fc1": "se.conv_reduce",
               "block.1.fc2": "se.conv_expand", "block.2.0": "conv_pw", "block.2.1": "bn2"}


def _timm_names(sd, family):
    """torchvision names -> timm's (``conv_stem``/``bn1``, ``blocks.{stage}.{j}.*``,
    ``conv_head``/``bn2``, ``classifier``), as timm's mobilenetv2_100 / efficientnet_b0 name them."""
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("features."))
    stage_of = [(s, j) for s, n in enumerate(_MNV2_REPEATS) for j in range(n)]
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        leaf = parts[-1]
        if k.startswith("classifier.1."):
            out[f"classifier.{leaf}"] = v
        elif parts[1] in ("0", str(last)):
            conv, bn = ("conv_stem", "bn1") if parts[1] == "0" else ("conv_head", "bn2")
            out[f"{conv if parts[2] == '0' else bn}.{leaf}"] = v
        elif family == "mobilenet_v2":
            s, j = stage_of[int(parts[1]) - 1]
            table = _TIMM_DS if s == 0 else _TIMM_IR
            out[f"blocks.{s}.{j}.{table['.'.join(parts[2:-1])]}.{leaf}"] = v
        else:
            s, j = int(parts[1]) - 1, parts[2]
            table = _TIMM_MB_DS if s == 0 else _TIMM_MB
            out[f"blocks.{s}.{j}.{table['.'.join(parts[3:-1])]}.{leaf}"] = v
    assert len(out) == len(sd)
    return out


@pytest.mark.parametrize("family", ["mobilenet_v2", "efficientnet_b0"])
def test_timm_names_give_the_same_variables(family):
    import chex

    model = TorchMobileNetV2() if family == "mobilenet_v2" else TorchEfficientNetB0()
    sd = _randomized(model, 2).state_dict()
    want = convert_torch(sd, family)  # torchvision names: logit parity tested above
    got = convert_torch(_timm_names(sd, family), family)
    assert got.model_overrides == want.model_overrides
    chex.assert_trees_all_equal(got.variables, want.variables)
