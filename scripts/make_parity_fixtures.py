"""Write the reference-parity fixtures that CI checks without torch.

    /work/torchvenv/bin/python scripts/make_parity_fixtures.py            # all fixtures
    /work/torchvenv/bin/python scripts/make_parity_fixtures.py resnet_basic vit

For every entry of ``FIXTURES`` (name -> builder of a tiny torchvision/timm model, defined in
``scripts/parity_fixtures/<family>.py``) this writes ``tests/convert/fixtures/<name>.npz``:

* ``state/<torch key>``: every state-dict entry, float32 (BatchNorm statistics randomized);
* ``input``: the NCHW float32 batch (2 images) fed to the reference;
* ``logits``: the reference's eval-mode logits, float32;
* ``meta``: JSON: source, reference constructor, jaxvision model name, the ``convert``/
  ``models.create`` overrides giving the same architecture, num_classes, library versions.

``tests/convert/test_parity_fixtures.py`` converts each with ``jaxvision.convert`` and compares
logits. Needs torch, torchvision and timm (never jaxvision dependencies).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import timm
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from parity_fixtures import (  # noqa: E402
    classic,
    convnext,
    efficientformer,
    fastvit,
    mobile,
    mobilevit_v2,
    relative_attention,
    transformer,
)
from parity_fixtures.common import Fixture, randomize_batchnorm, randomize_zero_inits  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "convert", "fixtures")

FIXTURES = {
    "resnet_basic": classic.resnet_basic,
    "resnet_bottleneck": classic.resnet_bottleneck,
    "densenet": classic.densenet,
    "vgg_bn": classic.vgg_bn,
    "vgg": classic.vgg,
    "googlenet": classic.googlenet,
    "alexnet": classic.alexnet,
    "mobilenet_v2": mobile.mobilenet_v2,
    "mobilenet_v2_timm": mobile.mobilenet_v2_timm,
    "mobilenet_v3_small": mobile.mobilenet_v3_small,
    "mobilenet_v3_large": mobile.mobilenet_v3_large,
    "efficientnet": mobile.efficientnet,
    "efficientnet_timm": mobile.efficientnet_timm,
    "tf_efficientnet_timm": mobile.tf_efficientnet_timm,
    "mobilevit_timm": mobile.mobilevit_timm,
    "convnext": convnext.convnext,
    "vit_timm": transformer.vit_timm,
    "deit_distilled_timm": transformer.deit_distilled_timm,
    "hybrid_r26_timm": transformer.hybrid_r26_timm,
    "swin": relative_attention.swin,
    "efficientnet_v2": relative_attention.efficientnet_v2,
    "tf_efficientnetv2_timm": relative_attention.tf_efficientnetv2_timm,
    "maxvit": relative_attention.maxvit,
    "maxvit_tf_timm": relative_attention.maxvit_tf_timm,
    "coatnet_timm": relative_attention.coatnet_timm,
    "mobilevitv2_timm": mobilevit_v2.mobilevitv2_timm,
    "efficientformer_timm": efficientformer.efficientformer_timm,
    "efficientformer_all_vit_timm": efficientformer.efficientformer_all_vit_timm,
    "fastvit_timm": fastvit.fastvit_timm,
}


def write_fixture(name: str, fixture: Fixture, out_dir: str, seed: int) -> str:
    g = torch.Generator().manual_seed(seed)
    model = fixture.model
    randomize_zero_inits(model, g)
    randomize_batchnorm(model, g)
    model.eval()
    r = fixture.resolution
    x = torch.randn(2, 3, r, r, generator=g)
    with torch.no_grad():
        logits = model(x)
    if logits.shape != (2, fixture.num_classes):
        raise SystemExit(f"{name}: reference logits have shape {tuple(logits.shape)}")
    arrays = {
        f"state/{k}": v.detach().float().numpy()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    meta = {
        "source": fixture.source,
        "reference": fixture.reference,
        "model": fixture.jaxvision_model,
        "overrides": fixture.overrides,
        "num_classes": fixture.num_classes,
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "timm": timm.__version__},
    }
    path = os.path.join(out_dir, f"{name}.npz")
    np.savez_compressed(path, input=x.numpy(), logits=logits.float().numpy(),
                        meta=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)
    params = sum(v.size for k, v in arrays.items())
    print(f"{path}: {params:,} values, {os.path.getsize(path) / 1e6:.2f} MB", file=sys.stderr)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"fixtures to write (default: all): {sorted(FIXTURES)}")
    parser.add_argument("--out_dir", default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(FIXTURES))
    if unknown:
        print(f"error: unknown fixture(s) {unknown}; choose from {sorted(FIXTURES)}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    for name in args.names or sorted(FIXTURES):
        torch.manual_seed(args.seed)
        write_fixture(name, FIXTURES[name](), args.out_dir, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
