"""timm ``fastvit_{t8,t12,sa12}`` state dicts (train-time form) -> ``models.fastvit``.

MobileOne blocks (``stem.{0,1,2}``, ``downsample.proj.1``, RepMixer ``mixer``/``norm``,
``final_conv``): ``identity`` (BatchNorm), ``conv_kxk.{b}.{conv,bn}``, ``conv_scale.{conv,bn}``,
``se.{fc1,fc2}``; patch embedding ``downsample.proj.0.{large,small}_conv.{conv,bn}``; RepCPE
``pos_emb.pos_enc``; blocks ``stages.{i}.blocks.{j}``: ``token_mixer`` (RepMixer with
``layer_scale.gamma``, or attention ``qkv``/``proj`` after ``norm``), ``mlp.{conv,fc1,fc2}``,
``layer_scale[_1,_2].gamma`` (C, 1, 1); ``head.fc``. Checkpoints already reparameterized
(``reparam_conv`` keys, timm ``inference_mode=True``) are refused: convert the train-time form.
"""

from __future__ import annotations

from jaxvision.convert.torch_mapper import StateDictMapper, classifier, conv_norm

__all__ = ["map_fastvit"]


def _mobileone(m: StateDictMapper, dst: str, src: str) -> None:
    if m.has(f"{src}.reparam_conv.weight"):
        raise ValueError(f"{src} is reparameterized (timm inference_mode); convert the train-time "
                         "checkpoint (timm fastvit_* without reparameterize_model)")
    if m.has(f"{src}.identity.weight"):
        m.bn(f"{dst}/identity", f"{src}.identity")
    if m.has(f"{src}.conv_scale.conv.weight"):
        conv_norm(m, f"{dst}/conv_scale", f"{src}.conv_scale.conv", f"{src}.conv_scale.bn")
    b = 0
    while m.has(f"{src}.conv_kxk.{b}.conv.weight"):
        conv_norm(m, f"{dst}/conv_kxk_{b}", f"{src}.conv_kxk.{b}.conv", f"{src}.conv_kxk.{b}.bn")
        b += 1
    if m.has(f"{src}.se.fc1.weight"):
        m.conv(f"{dst}/se/reduce", f"{src}.se.fc1", bias=True)
        m.conv(f"{dst}/se/expand", f"{src}.se.fc2", bias=True)


def _gamma(m: StateDictMapper, dst: str, src: str) -> None:
    m.out.put(dst, m.take(f"{src}.gamma").reshape(-1))


def _block(m: StateDictMapper, dst: str, src: str) -> None:
    if m.has(f"{src}.token_mixer.qkv.weight"):  # attention block
        m.bn(f"{dst}/norm", f"{src}.norm")
        m.out.put(f"{dst}/token_mixer/qkv/kernel", m.take(f"{src}.token_mixer.qkv.weight").T)
        m.linear(f"{dst}/token_mixer/proj", f"{src}.token_mixer.proj")
        _gamma(m, f"{dst}/layer_scale_1", f"{src}.layer_scale_1")
        _gamma(m, f"{dst}/layer_scale_2", f"{src}.layer_scale_2")
    else:  # RepMixer block
        _mobileone(m, f"{dst}/token_mixer/norm", f"{src}.token_mixer.norm")
        _mobileone(m, f"{dst}/token_mixer/mixer", f"{src}.token_mixer.mixer")
        _gamma(m, f"{dst}/token_mixer/layer_scale", f"{src}.token_mixer.layer_scale")
        _gamma(m, f"{dst}/layer_scale", f"{src}.layer_scale")
    conv_norm(m, f"{dst}/mlp/conv", f"{src}.mlp.conv.conv", f"{src}.mlp.conv.bn")
    m.conv(f"{dst}/mlp/fc1", f"{src}.mlp.fc1", bias=True)
    m.conv(f"{dst}/mlp/fc2", f"{src}.mlp.fc2", bias=True)


def map_fastvit(m: StateDictMapper, overrides=None) -> int:
    for k in range(3):
        _mobileone(m, f"stem_{k}", f"stem.{k}")
    i = 0
    while m.has(f"stages.{i}.blocks.0.mlp.fc1.weight"):
        src, dst = f"stages.{i}", f"stage{i + 1}"
        if m.has(f"{src}.downsample.proj.0.large_conv.conv.weight"):
            for branch in ("large_conv", "small_conv"):
                p = f"{src}.downsample.proj.0.{branch}"
                conv_norm(m, f"{dst}_downsample/{branch}", f"{p}.conv", f"{p}.bn")
            _mobileone(m, f"{dst}_downsample/pw", f"{src}.downsample.proj.1")
        if m.has(f"{src}.pos_emb.pos_enc.weight"):
            m.conv(f"{dst}_pos_emb", f"{src}.pos_emb.pos_enc", bias=True)
        j = 0
        while m.has(f"{src}.blocks.{j}.mlp.fc1.weight"):
            _block(m, f"{dst}_block{j + 1}", f"{src}.blocks.{j}")
            j += 1
        i += 1
    _mobileone(m, "final_conv", "final_conv")
    return classifier(m, "head.fc")
