"""fastdrop for Keras 3: ``import fastdrop.keras``.

Re-exports :mod:`fastdrop.adapters.keras` (this and that module are the only
places keras is imported): Keras's dropout layers (``Dropout``,
``SpatialDropout1D/2D/3D``, ``AlphaDropout``, ``GaussianDropout``,
``GaussianNoise``) with fastdrop's masks on the jax, torch and numpy Keras
backends, registered as serializable under the package name ``"fastdrop"``.
Set ``KERAS_BACKEND`` before importing it.  See that module for the seed
mapping and the differences from Keras's layers.

Examples
--------
>>> import numpy as np
>>> import keras
>>> import fastdrop.keras as fdk
>>> y = fdk.Dropout(0.5, seed=1)(np.ones((1, 4), np.float32), training=True)
>>> keras.ops.convert_to_numpy(y)
array([[0., 2., 0., 2.]], dtype=float32)
"""

from ._extras import require

require("keras", "keras", "fastdrop.keras")

from .adapters.keras import (  # noqa: F401
    PACKAGE,
    SUPPORTED_BACKENDS,
    AlphaDropout,
    Dropout,
    GaussianDropout,
    GaussianNoise,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
    __all__,
    fastdrop_seed,
)
