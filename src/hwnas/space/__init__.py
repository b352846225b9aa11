"""Search spaces: the ``space:`` schema, concrete points, their two encodings, and the model builder.

* :mod:`hwnas.space.spec` — :class:`SpaceConfig` (the experiment file's ``space:`` section).
* :mod:`hwnas.space.point` — :class:`Point` (frozen, hashable, ``to_dict``/``from_dict``), :class:`SpaceError`.
* :mod:`hwnas.space.space` — :class:`SearchSpace`: validation against the task, Optuna define-by-run
  suggestion and ``params``/``from_params``, the MONAS-LQ integer vector (``bounds``/``encode``/``decode``),
  ``sample``, ``size``, ``build``, and the point's FINN folding / hls4ml reuse factors per module.
* :mod:`hwnas.space.build` — the layer recipe (``build_model``).
* :mod:`hwnas.space.family` — the family registry behind ``space.family`` (:func:`make_space`,
  :func:`register_family`, :func:`load_family_module`) and :class:`ModelFamily`, the contract of a plug-in family.

See ``docs/space.md``.
"""

from .build import build_model, layer_plan, module_names
from .family import (
    Ask,
    FamilyContext,
    FamilyError,
    FamilySpace,
    LayerQuant,
    ModelFamily,
    family_names,
    get_family,
    load_family_module,
    make_space,
    register_family,
)
from .point import ConvBlock, DenseLayer, LayerMapping, Point, SpaceError
from .space import SearchSpace, VectorSlot
from .spec import FloatRange, IntRange, IntSpec, MappingConfig, PrecisionConfig, SpaceConfig, TrainingSpace, int_choices

__all__ = [
    "Ask",
    "ConvBlock",
    "DenseLayer",
    "FamilyContext",
    "FamilyError",
    "FamilySpace",
    "FloatRange",
    "IntRange",
    "IntSpec",
    "LayerMapping",
    "LayerQuant",
    "MappingConfig",
    "ModelFamily",
    "Point",
    "PrecisionConfig",
    "SearchSpace",
    "SpaceConfig",
    "SpaceError",
    "TrainingSpace",
    "VectorSlot",
    "build_model",
    "family_names",
    "get_family",
    "int_choices",
    "layer_plan",
    "load_family_module",
    "make_space",
    "module_names",
    "register_family",
]
