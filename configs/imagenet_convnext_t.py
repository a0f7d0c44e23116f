"""ConvNeXt-T from scratch on ImageNet-1k with the ConvNeXt paper's recipe (Liu et al. 2022).

  python -m jaxvision.train --config configs/imagenet_convnext_t.py --workdir /tmp/jv_imagenet_convnext_t
  # the imagenet2012 archive must be placed in data.data_dir by hand (TFDS manual download)

Recipe (paper Appendix A.1, Table 5; facebookresearch/ConvNeXt main.py): AdamW (b1 0.9, b2
0.999, eps 1e-8), lr 4e-3 at batch 4096 (scaled linearly with the batch), 20 linear warm-up
epochs then cosine to 1e-6 over 300 epochs, weight decay 0.05 (not on biases, LayerNorm
parameters or layer scales: ConvNeXt's 1-d parameters), label smoothing 0.1, stochastic depth 0.1,
layer scale 1e-6, EMA of the weights 0.9999, RandAugment(2, 9) (timm rand-m9-mstd0.5-inc1),
random erasing 0.25 (main.py --reprob 0.25 --remode pixel --recount 1), mixup 0.8 and cutmix 1.0
(one of the two per batch, p = 0.5), inception crop 224 + flip, eval resize 256 / center crop
224, ImageNet mean/std, bfloat16 compute with float32 parameters and loss.

Result: not measured here (ImageNet cannot be downloaded in this environment). Published: 82.1%
top-1 for ConvNeXt-T at 224 (paper Table 1; torchvision's convnext_tiny weights, trained with a
similar recipe, reach 82.52%). The paper also uses RandAugment's magnitude noise (mstd 0.5),
which jaxvision.data does not offer; expect up to a few tenths of a point less without it. The
EMA model is what load_run / evaluate use.

The cosine ends at end_lr_factor x peak = 1e-6 at batch 4096; if you change batch_size, set
--config.schedule.end_lr_factor=$(1e-6 / (4e-3 * batch / 4096)) to keep the 1e-6 floor.
"""

from jaxvision.config import base_config, lock

BATCH = 4096
PEAK_LR = 4e-3 * BATCH / 4096
STEPS_PER_EPOCH = 1_281_167 // BATCH


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "convnext_tiny"
    c.model.drop_path_rate = 0.1
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
    c.optimizer.no_decay_regex = r"(bias|scale)$"  # biases, LayerNorm scales, layer_scale
    c.schedule.name = "cosine"
    c.schedule.base_lr = 4e-3
    c.schedule.lr_batch_reference = 4096
    c.schedule.warmup_epochs = 20.0
    c.schedule.end_lr_factor = 1e-6 / PEAK_LR
    c.label_smoothing = 0.1
    c.ema_decay = 0.9999
    c.log_every_steps = 100
    c.eval_every_steps = STEPS_PER_EPOCH
    c.checkpoint_every_steps = STEPS_PER_EPOCH
    return lock(c)
