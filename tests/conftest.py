import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def dataset():
    """bench/design_dataset.py as a module (test_surrogate, test_alkaid_estimator): design specs and models."""
    spec = importlib.util.spec_from_file_location("design_dataset",
                                                  Path(__file__).parents[1] / "bench" / "design_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["design_dataset"] = mod
    spec.loader.exec_module(mod)
    return mod
