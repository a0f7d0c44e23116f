"""DeiT-S with a distillation token (Touvron et al. 2021, "Training data-efficient image
transformers & distillation through attention"), trained from scratch on ImageNet-1k with hard
distillation from a CNN teacher.

  # 1. a teacher run (DeiT used RegNetY-16GF, 82.9%; here any registered CNN's run, e.g. ConvNeXt-T):
  python -m jaxvision.train --config configs/imagenet_convnext_t.py --workdir /tmp/jv_teacher
  # 2. the student, with the teacher's run directory:
  python -m jaxvision.train --config configs/imagenet_deit_s_distilled.py \\
      --workdir /tmp/jv_imagenet_deit_s_distilled --config.distill.teacher_workdir=/tmp/jv_teacher
  # the imagenet2012 archive must be placed in data.data_dir by hand (TFDS manual download)

Recipe: the DeiT-S recipe of ``configs/imagenet_vit_s16.py`` (DeiT Table 9: AdamW, lr 5e-4 x
batch/512, weight decay 0.05, 300 epochs, 5 warm-up epochs, cosine, label smoothing 0.1,
RandAugment(2, 9) on the 0-10 scale, random erasing 0.25, mixup 0.8 / cutmix 1.0, stochastic
depth 0.1) on
``deit_s_distilled`` (class and distillation tokens, two heads), plus DeiT's hard distillation
(sec. 5.2, eq. 2): loss = 0.5 * CE(class head, label) + 0.5 * CE(distillation head, argmax of
the teacher's logits on the same augmented images) (``compression.distillation``). The teacher
runs in evaluation mode and is loaded from ``config.distill.teacher_workdir`` (checkpoint
``config.distill.checkpoint``); it must have been trained on the same classes and input
normalization (ImageNet mean/std). Evaluation uses the mean of the two heads, as DeiT and timm.

Result: not measured here (ImageNet cannot be downloaded in this environment). Published: 81.2%
top-1 (DeiT paper, Table 5, DeiT-S with distillation token, 224 px, 300 epochs, RegNetY-16GF
teacher; timm's deit_small_distilled_patch16_224 weights: 81.2%). DeiT also uses repeated
augmentation (3 repeats), which jaxvision.data does not offer; expect a few tenths of a point
less without it, and somewhat less with a weaker teacher than
RegNetY-16GF (DeiT Table 2: the teacher's accuracy matters less than its being a convnet).
"""

import importlib.util
import os

import ml_collections
from ml_collections import config_dict

from jaxvision.config import lock


def _deit_s_recipe():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_vit_s16.py")
    spec = importlib.util.spec_from_file_location("imagenet_vit_s16", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config(arg=None):
    del arg
    c = _deit_s_recipe()
    with c.unlocked():
        c.model.name = "deit_s_distilled"
        c.optimizer.no_decay_regex = r"(bias|scale)$|pos_embed|cls/|dist/"  # + the distillation token
        c.distill = ml_collections.ConfigDict({
            "teacher_workdir": config_dict.placeholder(str),  # required: a trained teacher run
            "checkpoint": "latest",  # or 'best' / a step
            "type": "hard",  # DeiT's hard-label distillation
            "alpha": 0.5,  # weight of the teacher term (DeiT eq. 2)
        })
    return lock(c)
