"""Swin-T from scratch on ImageNet-1k with the Swin paper's recipe (Liu et al. 2021, sec. 4.1
and appendix A2.1; microsoft/Swin-Transformer configs/swin/swin_tiny_patch4_window7_224.yaml).

  python -m jaxvision.train --config configs/imagenet_swin_t.py --workdir /tmp/jv_imagenet_swin_t
  # the imagenet2012 archive must be placed in data.data_dir by hand (TFDS manual download)

Recipe: AdamW (b1 0.9, b2 0.999, eps 1e-8), lr 5e-4 x batch/512 (1e-3 at batch 1024), 20 linear
warm-up epochs then cosine to 5e-6 x batch/512 (1e-5) over 300 epochs, weight decay 0.05 (not on
biases, norm parameters or relative position bias tables), gradient clipping at global norm 5,
label smoothing 0.1, RandAugment(2, 9), random erasing 0.25 (per-pixel noise, one box; the
official AUG.REPROB / REMODE 'pixel' / RECOUNT 1), mixup 0.8 / cutmix 1.0 (one per batch,
p = 0.5), stochastic depth 0.2, inception crop 224 + flip, eval resize 256 / center crop 224,
ImageNet mean/std, bfloat16 compute with float32 parameters and loss.

Result: not measured here (ImageNet cannot be downloaded in this environment). Published: 81.3%
top-1 (Swin paper, Table 1(a), Swin-T at 224). The official recipe also warms up from 5e-7 x
batch/512 instead of 0, which jaxvision's schedules do not offer.
"""

from jaxvision.config import base_config, lock

BATCH = 1024
PEAK_LR = 5e-4 * BATCH / 512


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "swin_t"
    c.model.drop_path_rate = 0.2
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
    c.optimizer.no_decay_regex = r"(bias|scale)$|relative_position_bias_table"
    c.clip_grad_norm = 5.0
    c.schedule.name = "cosine"
    c.schedule.base_lr = 5e-4
    c.schedule.lr_batch_reference = 512
    c.schedule.warmup_epochs = 20.0
    c.schedule.end_lr_factor = 5e-6 / 5e-4  # min lr 5e-6 x batch/512, as the peak
    c.label_smoothing = 0.1
    c.log_every_steps = 100
    c.eval_every_steps = 1251  # ~one epoch at batch 1024
    c.checkpoint_every_steps = 1251
    return lock(c)
