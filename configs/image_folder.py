"""Train or fine-tune on your own image folder (``root/<class>/*`` or ``root/<split>/<class>/*``).

  python -m jaxvision.train --config configs/image_folder.py --workdir /tmp/jv_folder \
      --config.data.path=/path/to/images
  # another model: --config configs/image_folder.py:resnet50
  # fine-tune another jaxvision run (its head is re-initialized for your classes and listed in
  # <workdir>/init_from.json): --config.init_from=/tmp/jv_imagenet_r50

Without split sub-folders, data.val_fraction / data.test_fraction of each class are held out
(stratified, data.split_seed). Defaults: ResNet-18 at 224 px, AdamW lr 1e-3 x batch/256 with 1 epoch
of warm-up and cosine decay, weight decay 0.05 (none on norms/biases), label smoothing 0.1,
30 epochs, inception crop + flip. For fine-tuning, lower the rate (--config.schedule.base_lr=1e-4) or
freeze the backbone (--config.optimizer.freeze='^(?!head/)').

Result: depends on your data; no dataset is bundled for this recipe (the bundled default job is
configs/mnist5k_lenet.py).
"""

from jaxvision.config import base_config, lock


def get_config(arg=None):
    c = base_config()
    c.model.name = arg or "resnet18"
    from jaxvision.models import registry

    # Head dropout where the model has one (settable with --config.model.drop_rate=0.2).
    if "drop_rate" in registry.model_options(c.model.name):
        c.model.drop_rate = 0.0
    c.data.name = "image_folder"
    c.data.image_size = 224
    c.batch_size = 32
    c.epochs = 30.0
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 0.05
    c.schedule.name = "cosine"
    c.schedule.base_lr = 1e-3
    c.schedule.lr_batch_reference = 256
    c.schedule.warmup_epochs = 1.0
    c.label_smoothing = 0.1
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 500
    return lock(c)
