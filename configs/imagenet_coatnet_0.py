"""CoAtNet-0 from scratch on ImageNet-1k at 224 px with the CoAtNet paper's ImageNet-1K settings
(Dai et al. 2021, appendix A.2, hyper-parameter table).

  python -m jaxvision.train --config configs/imagenet_coatnet_0.py --workdir /tmp/jv_imagenet_coatnet_0
  # the imagenet2012 archive must be placed in data.data_dir by hand (TFDS manual download)

Recipe: AdamW (b1 0.9, b2 0.999), batch 4096, peak lr 1e-3 (not batch-scaled), 10k linear
warm-up steps then cosine to 1e-5 over 300 epochs, weight decay 0.05 (not on biases, norm
parameters or relative position bias tables), gradient clipping at global norm 1, label
smoothing 0.1, RandAugment(2, 15), mixup 0.8, stochastic depth 0.2, no EMA, inception crop 224
+ flip, eval center crop 224 (0.875), ImageNet mean/std, bfloat16 compute.

Result: not measured here (ImageNet cannot be downloaded in this environment). Published: 81.6%
top-1 (CoAtNet paper, Table 4, CoAtNet-0 at 224, ImageNet-1K only). The model is timm's
``coatnet_0_224`` (25.04M parameters), the paper's C-C-T-T configuration.
"""

from jaxvision.config import base_config, lock

BATCH = 4096
PEAK_LR = 1e-3


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "coatnet_0"
    c.model.drop_path_rate = 0.2
    c.model.image_size = 224
    c.data.name = "imagenet2012"
    c.data.download = False
    c.data.image_size = 224
    c.data.train_crop = "inception"
    c.data.flip = True
    c.data.randaugment_n = 2
    # The paper's RandAugment magnitude is 15 on its 0-30 scale; jaxvision's follows the TF
    # reference's 0-10 scale, so 15/30 x 10 = 5.
    c.data.randaugment_m = 5
    c.data.mixup_alpha = 0.8
    c.data.eval_crop_fraction = 0.875
    c.data.eval_split = "validation"
    c.batch_size = BATCH
    c.epochs = 300.0
    c.dtype = "bfloat16"
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 0.05
    c.optimizer.no_decay_regex = r"(bias|scale)$|relative_position_bias_table"
    c.clip_grad_norm = 1.0
    c.schedule.name = "cosine"
    c.schedule.base_lr = PEAK_LR
    c.schedule.warmup_steps = 10_000
    c.schedule.end_lr_factor = 1e-5 / PEAK_LR
    c.label_smoothing = 0.1
    c.log_every_steps = 100
    c.eval_every_steps = 312  # ~one epoch at batch 4096
    c.checkpoint_every_steps = 312
    return lock(c)
