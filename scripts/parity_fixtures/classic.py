"""torchvision ResNet, DenseNet, VGG, GoogLeNet and AlexNet at tiny widths (module names as
torchvision's, so that the state-dict keys are the real ones)."""

from __future__ import annotations

import importlib

from torch import nn

from .common import NUM_CLASSES, Fixture

# torchvision.models re-exports builder functions under its modules' names (alexnet, ...).
tv_alexnet = importlib.import_module("torchvision.models.alexnet")
tv_densenet = importlib.import_module("torchvision.models.densenet")
tv_googlenet = importlib.import_module("torchvision.models.googlenet")
tv_resnet = importlib.import_module("torchvision.models.resnet")
tv_vgg = importlib.import_module("torchvision.models.vgg")



def _small_resnet(block, layers, width):
    """torchvision's ResNet with stage widths width * 2**i (torchvision fixes them at 64..512)."""
    m = tv_resnet.ResNet(block, layers, num_classes=NUM_CLASSES)
    m.inplanes = width
    m.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(width)
    for i, n in enumerate(layers):
        setattr(m, f"layer{i + 1}", m._make_layer(block, width * 2**i, n, stride=1 if i == 0 else 2))
    m.fc = nn.Linear(width * 2 ** (len(layers) - 1) * block.expansion, NUM_CLASSES)
    return m


def resnet_basic() -> Fixture:
    return Fixture(_small_resnet(tv_resnet.BasicBlock, [1, 1, 1, 1], 8), "torchvision",
                   "torchvision.models.resnet.ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10), "
                   "stage widths 8, 16, 32, 64", "resnet18",
                   {"stage_sizes": [1, 1, 1, 1], "width": 8}, 64)


def resnet_bottleneck() -> Fixture:
    return Fixture(_small_resnet(tv_resnet.Bottleneck, [1, 2, 1, 1], 8), "torchvision",
                   "torchvision.models.resnet.ResNet(Bottleneck, [1, 2, 1, 1], num_classes=10), "
                   "stage widths 8, 16, 32, 64", "resnet50",
                   {"stage_sizes": [1, 2, 1, 1], "width": 8}, 64)


def densenet() -> Fixture:
    kw = dict(growth_rate=8, block_config=(2, 1, 2, 1), num_init_features=16, bn_size=2)
    m = tv_densenet.DenseNet(num_classes=NUM_CLASSES, **kw)
    return Fixture(m, "torchvision", f"torchvision.models.densenet.DenseNet(num_classes=10, {kw})",
                   "densenet121", {**kw, "block_config": list(kw["block_config"])}, 64)


_VGG_TINY = [8, "M", 16, "M", 16, 16, "M", 32, "M", 32, "M"]


def _vgg(batch_norm: bool):
    m = tv_vgg.VGG(tv_vgg.make_layers(_VGG_TINY, batch_norm=batch_norm), num_classes=NUM_CLASSES)
    # torchvision fixes the classifier at 4096 wide; same indices (0, 3, 6), width 32.
    m.classifier = nn.Sequential(nn.Linear(32 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(),
                                 nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(),
                                 nn.Linear(32, NUM_CLASSES))
    return m


def vgg() -> Fixture:
    return Fixture(_vgg(False), "torchvision",
                   f"torchvision.models.vgg.VGG(make_layers({_VGG_TINY}), num_classes=10), "
                   "classifier width 32", "vgg11", {"config": _VGG_TINY, "fc_width": 32}, 32)


def vgg_bn() -> Fixture:
    return Fixture(_vgg(True), "torchvision",
                   f"torchvision.models.vgg.VGG(make_layers({_VGG_TINY}, batch_norm=True), "
                   "num_classes=10), classifier width 32", "vgg11_bn",
                   {"config": _VGG_TINY, "fc_width": 32}, 32)


_INCEPTION = {  # torchvision GoogLeNet's Inception arguments (after in_channels)
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet() -> Fixture:
    """GoogLeNet with every width divided by 8 (all of torchvision's are multiples of 8)."""
    d = 8
    m = tv_googlenet.GoogLeNet(num_classes=NUM_CLASSES, aux_logits=False, transform_input=False,
                               init_weights=True)
    conv = tv_googlenet.BasicConv2d
    m.conv1 = conv(3, 64 // d, kernel_size=7, stride=2, padding=3)
    m.conv2 = conv(64 // d, 64 // d, kernel_size=1)
    m.conv3 = conv(64 // d, 192 // d, kernel_size=3, padding=1)
    cin = 192 // d
    for name, ch in _INCEPTION.items():
        ch = [c // d for c in ch]
        setattr(m, f"inception{name}", tv_googlenet.Inception(cin, *ch))
        cin = ch[0] + ch[2] + ch[4] + ch[5]
    m.fc = nn.Linear(cin, NUM_CLASSES)
    return Fixture(m, "torchvision",
                   "torchvision.models.googlenet.GoogLeNet(num_classes=10, aux_logits=False, "
                   "transform_input=False), every width / 8", "googlenet",
                   {"width_multiplier": 1 / d}, 64)


def alexnet() -> Fixture:
    m = tv_alexnet.AlexNet(num_classes=NUM_CLASSES)
    ch = (8, 16, 16, 16, 16)
    m.features[0] = nn.Conv2d(3, ch[0], kernel_size=11, stride=4, padding=2)
    m.features[3] = nn.Conv2d(ch[0], ch[1], kernel_size=5, padding=2)
    m.features[6] = nn.Conv2d(ch[1], ch[2], kernel_size=3, padding=1)
    m.features[8] = nn.Conv2d(ch[2], ch[3], kernel_size=3, padding=1)
    m.features[10] = nn.Conv2d(ch[3], ch[4], kernel_size=3, padding=1)
    m.classifier[1] = nn.Linear(ch[4] * 6 * 6, 32)
    m.classifier[4] = nn.Linear(32, 32)
    m.classifier[6] = nn.Linear(32, NUM_CLASSES)
    return Fixture(m, "torchvision", "torchvision.models.alexnet.AlexNet(num_classes=10), conv "
                   f"widths {ch}, classifier width 32", "alexnet",
                   {"channels": list(ch), "fc_width": 32}, 64)

