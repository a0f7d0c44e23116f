"""Faults a second new-user session found (each kind fixed where it arises, one case each here):
evaluate on renamed class folders scored labels against the wrong outputs; a head with fewer
outputs than classes trained to NaN metrics; a model option the model lacks, or a damaged
.safetensors file, ended in a traceback; ``--help`` exited with status 1."""

import os
from types import SimpleNamespace

import ml_collections
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_evaluate_refuses_data_whose_classes_differ_from_the_run():
    from jaxvision.evaluation import evaluator

    run = SimpleNamespace(class_names=["cat", "dog"])
    with pytest.raises(ValueError, match=r"run only: \['cat', 'dog'\]; data only: \['hound', "):
        evaluator._check_same_labels(run, SimpleNamespace(class_names=["hound", "zebra"]))
    with pytest.raises(ValueError, match="classes differ"):  # same names, one more class
        evaluator._check_same_labels(run, SimpleNamespace(class_names=["cat", "dog", "eel"]))
    evaluator._check_same_labels(run, SimpleNamespace(class_names=("cat", "dog")))
    # A converted run without names records indices: nothing to compare.
    evaluator._check_same_labels(SimpleNamespace(class_names=["0", "1"]),
                                 SimpleNamespace(class_names=["cat", "dog"]))


def test_a_head_with_fewer_outputs_than_classes_is_refused():
    from jaxvision import config as config_lib

    config = ml_collections.ConfigDict({"model": {"num_classes": 3}, "batch_size": 8})
    info = SimpleNamespace(num_classes=10, num_examples=100, class_names=[str(i) for i in range(10)])
    with pytest.raises(ValueError, match="num_classes=3 but the training data has 10 classes"):
        config_lib.check_data(config, info)
    config.model.num_classes = 12  # spare outputs are allowed (timm's convention)
    config_lib.check_data(config, info)


def test_an_option_the_model_lacks_is_bad_input():
    from jaxvision import models

    with pytest.raises(ValueError, match="does not take option"):
        models.create("lenet5", num_classes=10, drop_rate=0.0)


def test_a_damaged_safetensors_file_is_one_message(tmp_path):
    pytest.importorskip("safetensors")
    from jaxvision.convert.torch import load_state_dict

    bad = tmp_path / "g.safetensors"
    bad.write_bytes(b"garbage\n")
    with pytest.raises(ValueError, match="g.safetensors.* is a text file; --source torch needs"):
        load_state_dict(str(bad))
    np.testing.assert_equal(bad.read_bytes(), b"garbage\n")  # never modified


@pytest.mark.parametrize("model", ["lenet5", "resnet18"])
def test_the_image_folder_recipe_builds_any_model(model):
    import importlib.util

    from jaxvision import models

    spec = importlib.util.spec_from_file_location("recipe", os.path.join(REPO, "configs",
                                                                         "image_folder.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    config = recipe.get_config(model)
    options = {k: v for k, v in config.model.items() if k not in ("name", "num_classes")}
    assert models.create(model, num_classes=2, **options) is not None
