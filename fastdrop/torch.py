"""fastdrop for PyTorch: ``import fastdrop.torch``.

Re-exports :mod:`fastdrop.adapters.torch` (this is the only place torch is
imported).  See that module for the seeding rules.  Without PyTorch,
importing this module raises :class:`ModuleNotFoundError` naming the extra
that installs it (``pip install "fastdrop-kernels[torch]"``).

Examples
--------
>>> import torch
>>> import fastdrop.torch as fdt
>>> fdt.dropout(torch.ones(4), 0.5, generator=0)
tensor([2., 0., 2., 2.])
"""

from ._extras import require

require("torch", "torch", "fastdrop.torch")

from .adapters.torch import (  # noqa: E402,F401
    AlphaDropout,
    DropPath,
    Dropout,
    FeatureAlphaDropout,
    GaussianDropout,
    GaussianNoise,
    alpha_dropout,
    drop_path,
    feature_alpha_dropout,
    gaussian_dropout,
    gaussian_noise,
    mc_dropout,
    mc_predict,
    Dropout1d,
    Dropout2d,
    Dropout3d,
    __all__,
    draw_seed,
    dropout,
)
