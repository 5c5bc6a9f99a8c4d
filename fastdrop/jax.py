"""fastdrop for JAX: ``import fastdrop.jax``.

Re-exports :mod:`fastdrop.adapters.jax` (this and that module are the only
places jax is imported).  See that module for the key mapping, the
:func:`jax.vmap` rule and what the custom calls take.

Examples
--------
>>> import jax.numpy as jnp
>>> import fastdrop.jax as fdj
>>> fdj.dropout(jnp.ones(4), 0.5, 0)
Array([2., 0., 2., 2.], dtype=float32)
"""

from ._extras import require

require("jax", "jax", "fastdrop.jax")

from .adapters.jax import (  # noqa: F401
    __all__,
    alpha_dropout,
    apply_mask,
    drop_path,
    dropout,
    dropout_mask,
    feature_alpha_dropout,
    gaussian_dropout,
    gaussian_noise,
    key_words,
)
