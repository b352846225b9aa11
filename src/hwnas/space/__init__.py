"""Search spaces: the ``space:`` schema, concrete points, their two encodings, and the model builder.

* :mod:`hwnas.space.spec` — :class:`SpaceConfig` (the experiment file's ``space:`` section).
* :mod:`hwnas.space.point` — :class:`Point` (frozen, hashable, ``to_dict``/``from_dict``), :class:`SpaceError`.
* :mod:`hwnas.space.space` — :class:`SearchSpace`: validation against the task, Optuna define-by-run
  suggestion and ``params``/``from_params``, the MONAS-LQ integer vector (``bounds``/``encode``/``decode``),
  ``sample``, ``size``, ``build``, and the point's FINN folding / hls4ml reuse factors per module.
* :mod:`hwnas.space.build` — the layer recipe (``build_model``).

See ``docs/space.md``.
"""

from .build import build_model, layer_plan, module_names
from .point import ConvBlock, DenseLayer, LayerMapping, Point, SpaceError
from .space import SearchSpace, VectorSlot
from .spec import FloatRange, IntRange, IntSpec, MappingConfig, PrecisionConfig, SpaceConfig, TrainingSpace, int_choices

__all__ = [
    "ConvBlock",
    "DenseLayer",
    "FloatRange",
    "IntRange",
    "IntSpec",
    "LayerMapping",
    "MappingConfig",
    "Point",
    "PrecisionConfig",
    "SearchSpace",
    "SpaceConfig",
    "SpaceError",
    "TrainingSpace",
    "VectorSlot",
    "build_model",
    "int_choices",
    "layer_plan",
    "module_names",
]
