"""my_families.py: a model family of your own for hwnas's search (docs/extending.md, "Your own model family").

``res_cnn`` — a small residual CNN for images: a stem convolution, 0 to 2 residual blocks of the same width
(:class:`hwnas.nn.QResidualBlock`: conv → ReLU → conv, plus the block's input), 2×2 max pooling and a linear
classifier. Its own search variables are the width, the number of blocks and each block's kernel; the choices
come from its options (``space.family_options`` in the experiment). The bit-widths of its layers (``stem``,
``block0``, ``block1``, ``head``) come from the experiment's ``space.precision`` like the built-in families'.

Importing this module registers the family; an experiment names it with
``space: {family: res_cnn, module: my_families}`` (the module is looked up next to the experiment file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import nn

import hwnas.nn as hn
from hwnas.space import Ask, FamilyContext, LayerQuant, ModelFamily, register_family


@register_family
class ResidualCNN(ModelFamily):
    """Stem conv → residual blocks → 2×2 max pool → linear classifier, on (channels, height, width) images."""

    name = "res_cnn"
    description = "a stem convolution, 0-2 residual blocks of one width, 2x2 max pooling, a linear classifier"
    defaults: ClassVar[dict[str, Any]] = {"widths": [4, 8, 16], "blocks": [0, 1, 2], "kernels": [1, 3],
                                          "stem_kernel": 3}

    def check(self, ctx: FamilyContext) -> None:
        """Images only, at least 2×2 pixels (one pooling)."""
        if len(ctx.input_shape) != 3:
            raise ValueError(f"needs (channels, height, width) images, e.g. digits with image: true; got "
                             f"{ctx.input_shape}")
        if min(ctx.input_shape[1:]) < 2:
            raise ValueError("needs images of at least 2x2 pixels (it pools once by 2)")

    def variables(self, ctx: FamilyContext) -> Mapping[str, Sequence[Any]]:
        """width, blocks, and block{i}.kernel for every block the deepest model has (vector order)."""
        o = ctx.options
        out: dict[str, Sequence[Any]] = {"width": sorted(o["widths"]), "blocks": sorted(o["blocks"])}
        for i in range(max(o["blocks"])):
            out[f"block{i}.kernel"] = sorted(o["kernels"])  # odd: a residual block keeps its size
        return out

    def layers(self, ctx: FamilyContext) -> Sequence[str]:
        """Every compute layer a model may have; the classifier ("head") last."""
        return ["stem", *(f"block{i}" for i in range(max(ctx.options["blocks"]))), "head"]

    def choose(self, ask: Ask, ctx: FamilyContext) -> Sequence[str]:
        """The width and depth first, then only the kernels of the blocks that exist."""
        ask("width")
        blocks = ask("blocks")
        for i in range(blocks):
            ask(f"block{i}.kernel")
        return ["stem", *(f"block{i}" for i in range(blocks)), "head"]

    def build(self, arch: Mapping[str, Any], ctx: FamilyContext, quant: LayerQuant) -> nn.Module:
        """Only hwnas layers (and a Sequential), so the search prices it and every exporter reads it."""
        c, h, w = ctx.input_shape
        width, k = arch["width"], ctx.options["stem_kernel"]
        layers: list[nn.Module] = [
            hn.QConv2d(c, width, k, padding=k // 2, input_quantizer=quant.model_input(),
                       weight_quantizer=quant.weight("stem"), bias_quantizer=quant.bias(), input_shape=(c, h, w)),
            hn.QActivation("relu"),
        ]
        last = "stem"
        for i in range(arch["blocks"]):
            label = f"block{i}"
            layers.append(hn.QResidualBlock(  # its quantizers are told the shape they see: (width, h, w)
                2, width, width, arch[f"{label}.kernel"], input_quantizer=quant.act(last, shape=(width, h, w)),
                activation_quantizer=quant.act(label, shape=(width, h, w)), weight_quantizer=quant.weight(label),
                bias_quantizer=quant.bias()))
            last = label
        layers += [hn.QMaxPool2d(2), hn.Flatten(),
                   hn.QLinear(width * (h // 2) * (w // 2), ctx.n_classes, input_quantizer=quant.act(last),
                              weight_quantizer=quant.weight("head"), bias_quantizer=quant.bias())]
        return nn.Sequential(*layers)
