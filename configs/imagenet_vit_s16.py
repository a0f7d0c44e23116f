"""ViT-S/16 (DeiT-S) from scratch on ImageNet-1k with the DeiT recipe (Touvron et al. 2021).

  python -m jaxvision.train --config configs/imagenet_vit_s16.py --workdir /tmp/jv_imagenet_vit_s16
  # the imagenet2012 archive must be placed in data.data_dir by hand (TFDS manual download)

Recipe (DeiT Table 9 / timm's DeiT training script): AdamW (b1 0.9, b2 0.999, eps 1e-8), lr
5e-4 x batch/512 (1e-3 at batch 1024), 5 linear warm-up epochs then cosine to 1e-5 over 300
epochs, weight decay 0.05 (not on biases, norm parameters, position embeddings or the class
token), label smoothing 0.1, RandAugment(2, 9), random erasing 0.25 (DeiT main.py --reprob 0.25
--remode pixel --recount 1), mixup 0.8 and cutmix 1.0 (one of the two per batch, p = 0.5),
stochastic depth 0.1, inception crop 224 + flip, eval resize 256 / center crop 224, ImageNet
mean/std, bfloat16 compute with float32 parameters and loss. ``scan_layers`` keeps the compile
short.

Result: not measured here (ImageNet cannot be downloaded in this environment). Published: 79.8%
top-1 (DeiT paper, Table 7, DeiT-S) and 79.9% for timm's deit_small_patch16_224 weights. The DeiT
recipe also uses repeated augmentation (3 repeats), which jaxvision.data does not offer; expect a
few tenths of a point less without it.

The cosine ends at end_lr_factor x peak = 1e-5 at batch 1024; if you change batch_size, set
--config.schedule.end_lr_factor=$(1e-5 / (5e-4 * batch / 512)) to keep the 1e-5 floor.
"""

from jaxvision.config import base_config, lock

BATCH = 1024
PEAK_LR = 5e-4 * BATCH / 512


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "vit_s16"
    c.model.drop_path_rate = 0.1
    c.model.scan_layers = True
    c.data.name = "imagenet2012"
    c.data.download = False
    c.data.image_size = 224
    c.data.train_crop = "inception"
    c.data.flip = True
    c.data.randaugment_n = 2
    c.data.randaugment_m = 9
    c.data.random_erasing_prob = 0.25
    c.data.mixup_alpha = 0.8
    c.data.cutmix_alpha = 1.0
    c.data.mixup_switch_prob = 0.5
    c.data.eval_crop_fraction = 0.875
    c.data.eval_split = "validation"
    c.batch_size = BATCH
    c.epochs = 300.0
    c.dtype = "bfloat16"
    c.optimizer.name = "adamw"
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.weight_decay = 0.05
    # Attention biases are (heads, head_dim) and scanned norm parameters (depth, D): name them
    # rather than relying on ndim.
    c.optimizer.no_decay_regex = r"(bias|scale)$|pos_embed|cls/"
    c.schedule.name = "cosine"
    c.schedule.base_lr = 5e-4
    c.schedule.lr_batch_reference = 512
    c.schedule.warmup_epochs = 5.0
    c.schedule.end_lr_factor = 1e-5 / PEAK_LR
    c.label_smoothing = 0.1
    c.log_every_steps = 100
    c.eval_every_steps = 1251  # ~one epoch at batch 1024
    c.checkpoint_every_steps = 1251
    return lock(c)
