"""jaxvision.data: input pipelines (TFDS, bundled datasets, image folders) and augmentation.

pipe = data.build(config.data, 'train', global_batch_size=256, train=True, seed=0)
for batch in pipe: ...   # {'image': f32 (B/P, H, W, C), 'label': i32 (B/P,), 'mask': bool}
x = data.load_for_eval(config.data, "photo.jpg")   # the same file's model input, bit for bit

Every image file is read by one decoder, `data.image_file` (as a viewer shows it: EXIF
orientation, ICC -> sRGB, alpha over a background, 16-bit, any Pillow format).
"""

import lazy_loader as _lazy

# Lazy: importing jaxvision.data (e.g. for default_config) must not import TensorFlow; the
# submodules that need it load on first use.
__getattr__, __dir__, _ = _lazy.attach(
    __name__,
    submodules=["augment", "balance", "bundled", "bundled_arrays", "eval_arrays", "image_file",
                "image_listing", "model_input", "preprocess", "sources"],
    submod_attrs={
        "balance": ["class_weights", "weights_from_counts"],
        "bundled": ["BUNDLED"],
        "config": ["default_config"],
        "image_file": ["ImageFileError"],
        "image_listing": ["IMAGE_EXTENSIONS", "expand_paths", "list_images"],
        "model_input": ["dataset_meta", "load_for_eval", "load_image", "preprocess_for_eval",
                        "resolve_config"],
        "pipeline": ["Pipeline", "build"],
        "pipeline_info": ["PipelineInfo"],
        "preprocess": ["Meta", "Resolved"],
        "sources": ["DataError", "write_skipped_files"],
    },
)

__all__ = [
    "BUNDLED",
    "IMAGE_EXTENSIONS",
    "DataError",
    "ImageFileError",
    "Meta",
    "Pipeline",
    "PipelineInfo",
    "Resolved",
    "augment",
    "balance",
    "build",
    "bundled",
    "bundled_arrays",
    "class_weights",
    "dataset_meta",
    "eval_arrays",
    "default_config",
    "expand_paths",
    "image_file",
    "image_listing",
    "list_images",
    "load_for_eval",
    "load_image",
    "model_input",
    "preprocess",
    "preprocess_for_eval",
    "resolve_config",
    "sources",
    "weights_from_counts",
    "write_skipped_files",
]
