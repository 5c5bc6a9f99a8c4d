"""The base of fastdrop's torch layers, in a module of its own because
TorchScript needs real (not postponed) annotations here.

``torch.jit.script`` compiles a layer's ``forward``, which hands the call to
the Python layer it was scripted from (:func:`module_forward`,
``torch.jit.ignore``) with the scripted copy's ``training`` flag.  So
scripting a model with fastdrop layers works in-process (``train()`` and
``eval()`` on the scripted model apply); such a scripted model cannot be
saved, as with any ignored function, and attributes changed on the scripted
copy (``p``) do not reach the layer.  Imported only by
:mod:`fastdrop.adapters.torch`.
"""

from typing import Dict

import torch

#: Layers that have been scripted, by id: kept alive for their scripted
#: copies (only scripted layers are registered, by __prepare_scriptable__).
_SCRIPTED: Dict[int, torch.nn.Module] = {}


@torch.jit.ignore
def module_forward(key: int, training: bool, x: torch.Tensor) -> torch.Tensor:
    """The scripted layer ``key``'s forward in Python."""
    return _SCRIPTED[key]._forward(x, training)


class Module(torch.nn.Module):
    """A layer whose ``forward`` is ``self._forward(x, self.training)``, in
    Python and under ``torch.jit.script``."""

    def __init__(self) -> None:
        super().__init__()
        self._script_key = id(self)

    def __prepare_scriptable__(self):
        _SCRIPTED[self._script_key] = self
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return module_forward(self._script_key, self.training, x)
        return self._forward(x, self.training)
