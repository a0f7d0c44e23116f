"""Keras applications -> jaxvision: resnet50, efficientnet_b0..b7, mobilenet_v2, densenet121, vgg16.

``convert_keras(model_or_path, name=None) -> Converted``. The source is a ``keras.Model`` or a
``.keras``/``.h5`` file (a full model, or weights only when ``name`` says which application to
build). Layout conventions handled:

* Conv2D kernels are (kh, kw, in, out) in both; DepthwiseConv2D (kh, kw, C, m) becomes the
  grouped-conv kernel (kh, kw, 1, C*m) (same channel order).
* Conv biases that Keras puts before a BatchNorm (ResNet50) fold into the BN moving mean.
* BatchNorm epsilon: Keras' (1e-3 MobileNetV2/EfficientNet, 1.001e-5 ResNet/DenseNet) is set as the
  model's ``bn_epsilon`` override.
* Input preprocessing: Keras' ``preprocess_input`` ('caffe': BGR, mean subtraction on 0..255;
  'tf': [-1, 1]; 'torch': ImageNet mean/std) or, for EfficientNet, the Rescaling/Normalization
  layers inside the model, become the data ``mean``/``std`` (pixels in [0, 1]) of the converted run,
  so that the model sees the very tensor Keras' first conv sees (zero padding included). Caffe's
  BGR order is absorbed by flipping the first conv's input channels.
* Padding: Keras pads stride-2 convs TF-style ("SAME": more on the bottom/right for even sizes).
  EfficientNet uses TF padding in jaxvision too. Where the jaxvision builder takes a ``padding``
  override it is set to "SAME"; otherwise (PyTorch-style symmetric padding) results are identical
  only for input sizes where both agree (every stride-2 input odd, e.g. 32k + 1), and a note says so.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np

from jaxvision.convert.common import Converted, ParamWriter
from jaxvision.convert.weights_file import check_weights_file

__all__ = ["KERAS_APPS", "convert_keras", "keras_application"]

# jaxvision name -> keras.applications constructor name
KERAS_APPS = {
    "resnet50": "ResNet50",
    "mobilenet_v2": "MobileNetV2",
    "densenet121": "DenseNet121",
    "vgg16": "VGG16",
    **{f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)},
}
# Keras preprocess_input mode per family: (mean, std) for pixels in [0, 1], and BGR input
_CAFFE = ((123.68 / 255, 116.779 / 255, 103.939 / 255), (1 / 255,) * 3, True)
_TF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), False)
_TORCH = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False)


def _import_keras():
    try:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    except Exception:  # noqa: BLE001 - TF is only needed for the TF backend
        pass
    import keras

    return keras


def _guess_name(keras_name: str) -> str:
    n = keras_name.lower()
    if n.startswith("efficientnetb") and n[-1].isdigit():
        return f"efficientnet_b{n[-1]}"
    if n.startswith("mobilenetv2"):
        return "mobilenet_v2"
    for name in ("resnet50", "densenet121", "vgg16"):
        if n == name:
            return name
    raise ValueError(
        f"cannot tell which jaxvision model Keras model {keras_name!r} is; pass name= / --model "
        f"(one of {sorted(KERAS_APPS)})"
    )


def keras_application(name: str, **kwargs):
    """Build ``keras.applications.<App>`` for a jaxvision name (weights=None unless given)."""
    keras = _import_keras()
    if name not in KERAS_APPS:
        raise ValueError(f"no Keras application for {name!r}; supported: {sorted(KERAS_APPS)}")
    kwargs.setdefault("weights", None)
    return getattr(keras.applications, KERAS_APPS[name])(**kwargs)


def _load(source, name: str | None):
    if not isinstance(source, str | os.PathLike):
        return source
    path = os.fspath(source)
    check_weights_file("keras", path)  # before importing Keras: a wrong file needs no Keras
    keras = _import_keras()
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - maybe a weights-only .h5
        if name is None:
            raise ValueError(
                f"{path!r} is not a loadable Keras model ({type(e).__name__}: {e}); if it holds weights "
                "only, pass --model NAME so the application can be built and the weights loaded"
            ) from e
        model = keras_application(name)
        try:
            model.load_weights(path)
        except Exception as e2:  # noqa: BLE001 - a damaged or foreign file, as one message
            raise ValueError(
                f"{path!r} is neither a loadable Keras model ({type(e).__name__}: {e}) nor "
                f"{name} weights ({type(e2).__name__}: {e2}); check the download or give the "
                "file written by model.save / model.save_weights") from None
        return model


def _layer_weights(model) -> dict[str, dict[str, np.ndarray]]:
    import keras

    out = {}
    for layer in model.layers:
        if layer.weights:
            out[layer.name] = {
                w.path.split("/")[-1]: np.asarray(keras.ops.convert_to_numpy(w), np.float32)
                for w in layer.weights
            }
    return out


class _Mapper:
    def __init__(self, weights: dict[str, dict[str, np.ndarray]]):
        self.w = weights
        self.out = ParamWriter()
        self.used: set[str] = set()

    def layer(self, name):
        if name not in self.w:
            raise ValueError(
                f"Keras layer {name!r} not found; the model is not the expected application"
            )
        self.used.add(name)
        return self.w[name]

    def conv(self, dst, name, *, depthwise=False, bias_to=None, flip_input=False):
        """Conv kernel -> dst/kernel; its bias -> dst/bias, or returned (to fold into a BN)."""
        lw = self.layer(name)
        k = lw["kernel"] if "kernel" in lw else lw["depthwise_kernel"]
        if depthwise:
            kh, kw, c, m = k.shape
            k = k.reshape(kh, kw, 1, c * m)
        if flip_input:
            k = k[:, :, ::-1, :]  # BGR-trained kernel on RGB input
        self.out.put(f"{dst}/kernel", k)
        if "bias" in lw:
            if bias_to == "fold":
                return lw["bias"]
            self.out.put(f"{dst}/bias", lw["bias"])
        return None

    def bn(self, dst, name, fold_bias=None):
        lw = self.layer(name)
        c = lw["moving_mean"].shape
        self.out.batchnorm(
            dst,
            lw.get("gamma", np.ones(c)),
            lw.get("beta", np.zeros(c)),
            lw["moving_mean"],
            lw["moving_variance"],
            fold_bias,
        )

    def conv_bn(self, dst_conv, dst_norm, conv_name, bn_name, **kw):
        b = self.conv(dst_conv, conv_name, bias_to="fold", **kw)
        self.bn(dst_norm, bn_name, fold_bias=b)

    def dense(self, dst, name):
        lw = self.layer(name)
        self.out.put(f"{dst}/kernel", lw["kernel"])
        self.out.put(f"{dst}/bias", lw["bias"])

    def has(self, name):
        return name in self.w


def _efficientnet(m: _Mapper, model) -> None:
    m.conv_bn("stem/conv", "stem/norm", "stem_conv", "stem_bn")
    blocks = sorted(
        {n.split("_")[0] for n in m.w if n.startswith("block")}, key=lambda b: (int(b[5:-1]), b[-1])
    )
    for b in blocks:
        stage, index = int(b[5:-1]), ord(b[-1]) - ord("a") + 1
        dst = f"stage{stage}_block{index}"
        if m.has(f"{b}_expand_conv"):
            m.conv_bn(
                f"{dst}/expand/conv", f"{dst}/expand/norm", f"{b}_expand_conv", f"{b}_expand_bn"
            )
        m.conv_bn(f"{dst}/dw/conv", f"{dst}/dw/norm", f"{b}_dwconv", f"{b}_bn", depthwise=True)
        if m.has(f"{b}_se_reduce"):
            m.conv(f"{dst}/se/reduce", f"{b}_se_reduce")
            m.conv(f"{dst}/se/expand", f"{b}_se_expand")
        m.conv_bn(
            f"{dst}/project/conv", f"{dst}/project/norm", f"{b}_project_conv", f"{b}_project_bn"
        )
    m.conv_bn("head_conv/conv", "head_conv/norm", "top_conv", "top_bn")
    if m.has("predictions"):
        m.dense("head", "predictions")


def _mobilenet_v2(m: _Mapper, model) -> None:
    m.conv_bn("stem/conv", "stem/norm", "Conv1", "bn_Conv1")
    m.conv_bn(
        "block1/dw/conv",
        "block1/dw/norm",
        "expanded_conv_depthwise",
        "expanded_conv_depthwise_BN",
        depthwise=True,
    )
    m.conv_bn(
        "block1/project/conv",
        "block1/project/norm",
        "expanded_conv_project",
        "expanded_conv_project_BN",
    )
    k = 1
    while m.has(f"block_{k}_project"):
        dst, src = f"block{k + 1}", f"block_{k}"
        m.conv_bn(f"{dst}/expand/conv", f"{dst}/expand/norm", f"{src}_expand", f"{src}_expand_BN")
        m.conv_bn(
            f"{dst}/dw/conv",
            f"{dst}/dw/norm",
            f"{src}_depthwise",
            f"{src}_depthwise_BN",
            depthwise=True,
        )
        m.conv_bn(
            f"{dst}/project/conv", f"{dst}/project/norm", f"{src}_project", f"{src}_project_BN"
        )
        k += 1
    m.conv_bn("head_conv/conv", "head_conv/norm", "Conv_1", "Conv_1_bn")
    if m.has("predictions"):
        m.dense("head", "predictions")


def _resnet50(m: _Mapper, model) -> None:
    m.conv_bn("backbone/stem_conv", "backbone/stem_norm", "conv1_conv", "conv1_bn", flip_input=True)
    for stage in range(2, 6):
        j = 1
        while m.has(f"conv{stage}_block{j}_1_conv"):
            src, dst = f"conv{stage}_block{j}", f"backbone/stage{stage - 1}_block{j}"
            for i in (1, 2, 3):
                m.conv_bn(f"{dst}/conv{i}", f"{dst}/norm{i}", f"{src}_{i}_conv", f"{src}_{i}_bn")
            if m.has(f"{src}_0_conv"):
                m.conv_bn(
                    f"{dst}/downsample_conv",
                    f"{dst}/downsample_norm",
                    f"{src}_0_conv",
                    f"{src}_0_bn",
                )
            j += 1
    if m.has("predictions"):
        m.dense("head", "predictions")


def _densenet121(m: _Mapper, model) -> None:
    m.conv("conv0", "conv1_conv")
    m.bn("norm0", "conv1_bn")
    for block in range(2, 6):
        j = 1
        while m.has(f"conv{block}_block{j}_1_conv"):
            src, dst = f"conv{block}_block{j}", f"block{block - 1}_layer{j}"
            m.bn(f"{dst}/norm1", f"{src}_0_bn")
            m.conv(f"{dst}/conv1", f"{src}_1_conv")
            m.bn(f"{dst}/norm2", f"{src}_1_bn")
            m.conv(f"{dst}/conv2", f"{src}_2_conv")
            j += 1
        if m.has(f"pool{block}_conv"):
            m.bn(f"transition{block - 1}_norm", f"pool{block}_bn")
            m.conv(f"transition{block - 1}_conv", f"pool{block}_conv")
    m.bn("norm_final", "bn")
    if m.has("predictions"):
        m.dense("head", "predictions")


def _vgg16(m: _Mapper, model) -> None:
    i = 0
    for block in range(1, 6):
        j = 1
        while m.has(f"block{block}_conv{j}"):
            i += 1
            m.conv(f"conv{i}", f"block{block}_conv{j}", flip_input=(i == 1))
            j += 1
    if m.has("fc1") and m.w["fc1"]["kernel"].shape[0] != 7 * 7 * 512:
        raise ValueError(
            "Keras VGG16 with its top converts only at 224x224 input: jaxvision's VGG pools to 7x7 "
            "before fc1 (as torchvision), Keras flattens whatever size comes; build the Keras model "
            "with input_shape=(224, 224, 3) or include_top=False"
        )
    for name in ("fc1", "fc2"):
        if m.has(name):
            m.dense(name, name)
    if m.has("predictions"):
        m.dense("head", "predictions")


_FAMILIES = {
    "resnet50": (_resnet50, _CAFFE, 1.001e-5),
    "vgg16": (_vgg16, _CAFFE, None),
    "mobilenet_v2": (_mobilenet_v2, _TF, 1e-3),
    "densenet121": (_densenet121, _TORCH, 1.001e-5),
    **{f"efficientnet_b{i}": (_efficientnet, None, 1e-3) for i in range(8)},
}


def _internal_preprocessing(model) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Compose the Rescaling/Normalization layers before the first conv into (mean, std) for
    pixels in [0, 1]: the layers compute x = a * (255 p) + b per channel."""
    import keras

    a, b = np.ones(3), np.zeros(3)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Rescaling":
            s = np.broadcast_to(np.asarray(layer.scale, np.float64).ravel(), (3,))
            o = np.broadcast_to(np.asarray(layer.offset, np.float64).ravel(), (3,))
            a, b = a * s, b * s + o
        elif kind == "Normalization":
            # The stored variables (what load_weights fills), else the constants given at build.
            stored = {w.path.split("/")[-1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
            mean = stored.get("mean", keras.ops.convert_to_numpy(layer.mean))
            var = stored.get("variance", keras.ops.convert_to_numpy(layer.variance))
            mean = np.broadcast_to(np.asarray(mean, np.float64).ravel(), (3,))
            var = np.asarray(var, np.float64).ravel()
            sd = np.maximum(np.sqrt(np.broadcast_to(var, (3,))), keras.backend.epsilon())
            a, b = a / sd, (b - mean) / sd
        elif kind in ("Conv2D", "DepthwiseConv2D"):
            break
    # x = a * 255 p + b = (p - mean) / std  with std = 1 / (255 a), mean = -b std
    std = 1.0 / (255.0 * a)
    return tuple(float(v) for v in -b * std), tuple(float(v) for v in std)


def convert_keras(source: Any, name: str | None = None) -> Converted:
    """Map a Keras application's weights onto the registered jaxvision model.

    Args:
      source: ``keras.Model`` or a path to a ``.keras``/``.h5`` file.
      name: jaxvision model name (default: guessed from the Keras model's name).
    Returns:
      ``Converted`` (variables, normalization, model overrides); ``Converted.create_model()``
      builds the matching module.
    """
    model = _load(source, name)
    name = name or _guess_name(model.name)
    if name not in _FAMILIES:
        raise ValueError(f"no Keras converter for {name!r}; supported: {sorted(_FAMILIES)}")
    mapper_fn, preprocessing, bn_epsilon = _FAMILIES[name]
    m = _Mapper(_layer_weights(model))
    mapper_fn(m, model)
    # Preprocessing layers (found by type: a second model in one session names its Normalization
    # 'normalization_1') become the data mean/std, not variables.
    preprocessing_layers = {layer.name for layer in model.layers
                            if type(layer).__name__ in ("Normalization", "Rescaling")}
    unused = sorted(set(m.w) - m.used - preprocessing_layers)
    if unused:
        raise ValueError(f"Keras layers with weights left unmapped: {unused[:10]}; is this {name}?")

    from jaxvision import models

    spec = models.get_spec(name)
    accepted = set(inspect.signature(spec.builder).parameters)
    overrides: dict[str, Any] = {}
    notes: list[str] = []
    if bn_epsilon is not None:
        overrides["bn_epsilon"] = bn_epsilon
    if name == "resnet50":
        v1 = [k for k in ("stride_in_1x1", "stride_on_1x1", "v1") if k in accepted]
        if not v1:
            raise NotImplementedError(
                "Keras ResNet50 is ResNet v1 (stride 2 on the first 1x1 conv of a bottleneck); "
                "jaxvision's resnet50 is v1.5 (stride on the 3x3 conv) and has no v1 option yet, so "
                "the same weights cannot give the same logits. Use torchvision/timm ResNet-50 weights "
                "(--source torch), which are v1.5."
            )
        overrides[v1[0]] = True
    if name == "mobilenet_v2":  # the others pad explicitly/symmetrically in Keras too
        if "padding" in accepted:
            overrides["padding"] = "SAME"
        else:
            notes.append(
                "Keras pads stride-2 convs TF-style and jaxvision's mobilenet_v2 PyTorch-style: "
                "logits agree exactly only at input sizes 32k+1 (e.g. 225)"
            )
    if preprocessing is None:
        mean, std = _internal_preprocessing(model)
        notes.append("Keras' in-model Rescaling/Normalization became the data mean/std")
    else:
        mean, std, bgr = preprocessing
        if bgr:
            notes.append(
                "caffe preprocessing: BGR order absorbed into the first conv; mean/std on 0..255"
            )
    shape = tuple(model.input_shape[1:])
    if None in shape:
        r = spec.default_resolution
        shape = (r, r, shape[-1] or 3)
    head = m.w.get("predictions", {}).get("kernel")
    num_classes = int(head.shape[-1]) if head is not None else 0
    converted = Converted(
        model_name=name,
        variables=m.out.variables(),
        num_classes=num_classes,
        image_shape=tuple(int(s) for s in shape),
        mean=tuple(mean),
        std=tuple(std),
        model_overrides=overrides,
        source=f"keras:{model.name}",
        notes=notes,
    )
    m.out.check_against(converted.create_model(), converted.image_shape)
    return converted
