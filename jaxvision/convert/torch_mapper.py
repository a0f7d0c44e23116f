"""Writing a PyTorch state dict onto jaxvision parameter paths: the mapper every torch converter
(``jaxvision.convert.torch`` and ``torch_<family>`` modules) uses, and the pieces they share.

Layouts: conv (out, in/groups, kh, kw) -> (kh, kw, in/groups, out); linear (out, in) -> (in, out);
BatchNorm -> scale/bias + batch_stats mean/var; LayerNorm weight -> scale.
"""

from __future__ import annotations

from jaxvision.convert.common import ParamWriter

__all__ = ["StateDictMapper", "classifier", "conv_norm", "encoder_block", "squeeze_excite"]


class StateDictMapper:
    """Takes state-dict entries (recording which were used) and writes them as jaxvision
    variables; a missing key raises ValueError naming it."""

    def __init__(self, sd):
        self.sd = sd
        self.used: set[str] = set()
        self.out = ParamWriter()

    def take(self, key):
        if key not in self.sd:
            raise ValueError(f"state dict has no {key!r}; is it the architecture named by --model?")
        self.used.add(key)
        return self.sd[key]

    def has(self, key):
        return key in self.sd

    def conv(self, dst, src, bias=False):
        self.out.put(f"{dst}/kernel", self.take(f"{src}.weight").transpose(2, 3, 1, 0))
        if bias:
            self.out.put(f"{dst}/bias", self.take(f"{src}.bias"))

    def bn(self, dst, src):
        self.out.batchnorm(
            dst,
            self.take(f"{src}.weight"),
            self.take(f"{src}.bias"),
            self.take(f"{src}.running_mean"),
            self.take(f"{src}.running_var"),
        )

    def ln(self, dst, src):
        self.out.put(f"{dst}/scale", self.take(f"{src}.weight"))
        self.out.put(f"{dst}/bias", self.take(f"{src}.bias"))

    def linear(self, dst, src):
        self.out.put(f"{dst}/kernel", self.take(f"{src}.weight").T)
        self.out.put(f"{dst}/bias", self.take(f"{src}.bias"))

    def linear_after_flatten(self, dst, src, side: int):
        """A linear layer reading a flattened (C, side, side) map: PyTorch flattens NCHW as
        (C, H, W), jaxvision's NHWC as (H, W, C), so the input rows are permuted."""
        w = self.take(f"{src}.weight")  # (out, C * side * side)
        c = w.shape[1] // (side * side)
        w = w.reshape(w.shape[0], c, side, side).transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
        self.out.put(f"{dst}/kernel", w)
        self.out.put(f"{dst}/bias", self.take(f"{src}.bias"))


def conv_norm(m: StateDictMapper, dst: str, conv: str, bn: str) -> None:
    """A ConvNormAct (conv without bias, then BatchNorm)."""
    m.conv(f"{dst}/conv", conv)
    m.bn(f"{dst}/norm", bn)


def squeeze_excite(m: StateDictMapper, dst: str, reduce: str, expand: str) -> None:
    m.conv(f"{dst}/se/reduce", reduce, bias=True)
    m.conv(f"{dst}/se/expand", expand, bias=True)


def classifier(m: StateDictMapper, src: str) -> int:
    if m.has(f"{src}.weight"):
        m.linear("head", src)
        return int(m.sd[f"{src}.weight"].shape[0])
    return 0


def encoder_block(m: StateDictMapper, dst: str, src: str, heads: int) -> None:
    """A timm transformer ``Block`` (norm1, fused ``attn.qkv``, ``attn.proj``, norm2, mlp.fc1/fc2)
    onto ``layers.transformer.EncoderBlock``: qkv splits into query/key/value kernels (D, heads,
    head_dim), the projection becomes the (heads, head_dim, D) output kernel."""
    m.ln(f"{dst}/norm1", f"{src}.norm1")
    m.ln(f"{dst}/norm2", f"{src}.norm2")
    qkv_w, qkv_b = m.take(f"{src}.attn.qkv.weight"), m.take(f"{src}.attn.qkv.bias")
    proj = m.take(f"{src}.attn.proj.weight")
    width = proj.shape[0]
    if width % heads:
        raise ValueError(f"{src}: width {width} is not divisible by {heads} heads")
    hd = width // heads
    for n, name in enumerate(("query", "key", "value")):
        w = qkv_w[n * width : (n + 1) * width]  # (D_out, D_in)
        m.out.put(f"{dst}/attn/{name}/kernel", w.T.reshape(width, heads, hd))
        m.out.put(f"{dst}/attn/{name}/bias", qkv_b[n * width : (n + 1) * width].reshape(heads, hd))
    m.out.put(f"{dst}/attn/out/kernel", proj.T.reshape(heads, hd, width))
    m.out.put(f"{dst}/attn/out/bias", m.take(f"{src}.attn.proj.bias"))
    m.linear(f"{dst}/mlp/fc1", f"{src}.mlp.fc1")
    m.linear(f"{dst}/mlp/fc2", f"{src}.mlp.fc2")
