"""R50+ViT-B/16 hybrid fine-tuned on ImageNet-1k at 384 px (the ViT paper's fine-tuning recipe).

  python -m jaxvision.train --config configs/imagenet_r50_vit_b16.py --workdir /tmp/jv_r50_vit_b16 \
      --config.init_from=/path/to/run_with_imagenet21k_r50_vit_b16_params

Recipe (Dosovitskiy et al. 2021, appendix B.1.1; google-research/vision_transformer
vit_jax/configs/common.py): start from ImageNet-21k pre-trained weights (``init_from``; the
21k-class head is re-initialized: zero kernel, as the paper), SGD with momentum 0.9, no weight
decay, global gradient-norm clipping at 1, batch 512, lr 0.03 (swept over {0.003, 0.01, 0.03,
0.06} in the paper), 500 linear warm-up steps then cosine to 0, 20,000 steps, inputs scaled to
[-1, 1] (mean = std = 0.5), inception crop 384 + flip for training and a plain resize to 384 for
evaluation, dropout 0.1 in the encoder.

The position embedding keeps its 14x14 (224 px) parameter shape, so a 224-px checkpoint loads
unchanged; at 384 px it is interpolated to 24x24 on the fly (bicubic). The paper instead resizes
it once (``jaxvision.layers.patch.resize_pos_embedding_params``) and fine-tunes the 24x24 copy.

Result: not measured here (ImageNet and the ImageNet-21k checkpoint cannot be downloaded in this
environment). Published (vision_transformer README, ImageNet-21k pre-training, 384 px): 85.08%
top-1 with dropout 0.1, 83.72% without.
"""

from jaxvision.config import base_config, lock


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "r50_vit_b16"
    c.model.dropout_rate = 0.1
    c.model.scan_layers = True
    c.data.name = "imagenet2012"
    c.data.download = False
    c.data.image_size = 384
    c.data.mean = (0.5, 0.5, 0.5)
    c.data.std = (0.5, 0.5, 0.5)
    c.data.train_crop = "inception"
    c.data.flip = True
    c.data.eval_crop_fraction = 1.0
    c.data.eval_split = "validation"
    c.batch_size = 512
    c.total_steps = 20_000
    c.dtype = "bfloat16"
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 0.0
    c.clip_grad_norm = 1.0
    c.schedule.name = "cosine"
    c.schedule.base_lr = 0.03
    c.schedule.warmup_steps = 500
    c.log_every_steps = 100
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 1000
    return lock(c)
