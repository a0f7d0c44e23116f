"""Write variables as a jaxvision run directory that ``init_from`` and ``load_run`` accept.

Layout (the training engineer's, see ``jaxvision.training.checkpoints``): ``DIR/checkpoints/<step>/``
with Orbax items ``state`` (``{'params', 'batch_stats'}``) and ``meta`` (model, num_classes,
class_names, image_shape, step), plus ``DIR/config.json`` (a resolved config naming the model) so
that evaluate / predict / explain can load it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax.core import unfreeze

__all__ = ["save_variables"]


def save_variables(
    workdir: str,
    variables: dict[str, Any],
    *,
    model_name: str,
    num_classes: int,
    image_shape: Sequence[int],
    class_names: Sequence[str] | None = None,
    config: Any = None,
    step: int = 0,
    extra_meta: dict[str, Any] | None = None,
) -> str:
    """Save ``{'params', 'batch_stats'}`` as checkpoint ``step`` of ``workdir``; returns workdir.

    ``config``: a ConfigDict to store as config.json (default: ``jaxvision.config.base_config()``
    with ``model.name``/``model.num_classes`` set and the data image size/channels of
    ``image_shape``).
    """
    from jaxvision.training.checkpoints import CheckpointStore, checkpoint_dir

    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    if os.path.isdir(checkpoint_dir(workdir)) and os.listdir(checkpoint_dir(workdir)):
        raise FileExistsError(
            f"{checkpoint_dir(workdir)} already holds checkpoints; choose a new --output"
        )
    state = {
        "params": jax.tree.map(np.asarray, unfreeze(variables["params"])),
        "batch_stats": jax.tree.map(np.asarray, unfreeze(variables.get("batch_stats") or {})),
    }
    if not state["batch_stats"]:
        state.pop("batch_stats")  # Orbax cannot store an empty subtree; load_run treats it as {}
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    meta = {
        "model": model_name,
        "num_classes": int(num_classes),
        "class_names": names,
        "image_shape": [int(d) for d in image_shape],
        "step": int(step),
        **(extra_meta or {}),
    }
    if config is None:
        from jaxvision.config import base_config

        config = base_config()
        with config.unlocked():
            config.model.name = model_name
            config.model.num_classes = int(num_classes)
            if "image_size" in config.data:
                config.data.image_size = int(image_shape[0])
            if "channels" in config.data:
                config.data.channels = int(image_shape[-1])
    store = CheckpointStore(checkpoint_dir(workdir), async_save=False)
    try:
        store.save(step, state, meta)
    finally:
        store.close()
    with open(os.path.join(workdir, "config.json"), "w") as f:
        if hasattr(config, "to_json_best_effort"):
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))
        else:
            json.dump(config, f, indent=2, sort_keys=True, default=str)
    return workdir
