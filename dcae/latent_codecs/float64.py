"""Float64 copies of modules, for DCAE's portable coding.

Portable coding (:mod:`dcae.latent_codecs.coding_mode`, format guide
"Portable coding") computes the entropy parameters in float64 on copies of
``h_s`` and the entropy model.  :func:`float64_copy` makes such a copy:
eager (``torch.compile`` unwrapped), its layers replaced by the float64
layers of :mod:`dcae.latent_codecs.float64_layers` (fast on a CPU, where
oneDNN has no float64 kernels), kept and reused while the module's state is
unchanged; :func:`clear_float64_copies` drops the kept ones (an explicit
cache with an explicit clear).
"""

from __future__ import annotations

import copy
import weakref
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from .float64_layers import replace_layers

__all__ = ["clear_float64_copies", "float64_copy"]


#: the float64 copy of each module, with the state it was made from
_FLOAT64_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def float64_copy(
    module: nn.Module, prepare: Optional[Callable[[nn.Module], object]] = None
) -> nn.Module:
    """A float64 copy of ``module`` for portable coding, with every
    ``torch.compile`` wrapper inside it replaced by the eager module it wraps
    (portable coding runs one canonical computation; compiling is a speed
    choice that must not change symbols).

    The copy is kept (weakly, beside the module, never in its state) and
    reused while the module's state is unchanged: the same submodule and
    tensor objects, the same plain settings of every submodule (train flag,
    attention backend, ...), and every parameter and
    buffer at the same storage and in-place version and with the same values
    (compared with a snapshot kept beside the copy, one reduction per call,
    so writes through ``.data`` that leave the version unchanged are seen
    too).  A training step,
    ``load_state_dict``, ``update()``, ``.to()`` or a swapped submodule makes a
    fresh copy.  A module whose tensors were made under
    ``torch.inference_mode()`` (no version counters) is copied on every
    call.  ``prepare`` is applied once to each new copy, before it is kept
    (the owner of ``module`` rearranging its own copy: the entropy model
    pairs layers, :func:`pair_first_layers`)."""
    state = _State.of(module)
    cached = _FLOAT64_COPIES.get(module) if state is not None else None
    if cached is not None and cached[0].matches(state):
        return cached[1]
    copied = _make_float64_copy(module)
    if prepare is not None:
        prepare(copied)
    if state is not None:
        state.keep_values()
        _FLOAT64_COPIES[module] = (state, copied)
    return copied


_SETTINGS = (bool, int, float, str, tuple, type(None))


class _State:
    """What a float64 copy of a module depends on: its submodule and tensor
    objects (held weakly), their plain settings, storages and versions."""

    def __init__(self, tensors: List[Tensor], modules: List[nn.Module], key: tuple):
        self.refs = [weakref.ref(o) for o in [*tensors, *modules]]
        self.num_tensors = len(tensors)
        self.key = key
        self.values: Optional[List[Tensor]] = None

    def keep_values(self) -> None:
        """Snapshot the tensors' values (the copy was made from them)."""
        self.values = [r().detach().clone() for r in self.refs[: self.num_tensors]]

    @staticmethod
    def of(module: nn.Module) -> Optional[_State]:
        tensors = [*module.parameters(), *module.buffers()]
        if any(_is_fake(t) for t in tensors):  # device tracing: nothing worth keeping
            return None
        modules = list(module.modules())
        try:  # inference-mode tensors have no version counter
            versions = tuple(
                (t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for t in tensors
            )
        except RuntimeError:
            return None
        # plain settings (train flag, attention backend, ...)
        flags = tuple(
            tuple((k, v) for k, v in vars(m).items() if isinstance(v, _SETTINGS)) for m in modules
        )
        return _State(tensors, modules, (versions, flags))

    def matches(self, other: Optional[_State]) -> bool:
        if not (
            other is not None
            and self.values is not None
            and self.key == other.key
            and len(self.refs) == len(other.refs)
            and all(a() is b() is not None for a, b in zip(self.refs, other.refs))
        ):
            return False
        if not self.values:
            return True
        current = [r() for r in other.refs[: other.num_tensors]]
        changed = torch.stack([torch.ne(a, b).any() for a, b in zip(self.values, current)])
        return not bool(changed.any())  # one host read


def clear_float64_copies() -> None:
    """Drop every kept float64 copy (:func:`float64_copy`) now; the next
    portable coding makes its copy again.  A copy also goes with its model.
    They hold about 40 MB for the ``small`` preset and 1 GB for ``paper``,
    plus a snapshot of the module's values (17 MB and 480 MB)."""
    _FLOAT64_COPIES.clear()


def _is_fake(t: Tensor) -> bool:
    """A tensor of ``FakeTensorMode`` (device tracing), which has no data."""
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(t)


def _make_float64_copy(module: nn.Module) -> nn.Module:
    # a plain (not inference-mode) copy: attention caches read version counters
    with torch.inference_mode(False), torch.no_grad():
        source = _eager(module)
        # the copy's tensors, given to deepcopy: float ones converted once (no
        # float32 copy made first; new objects, as tensor subclasses such as fake
        # tensors refuse the swap ``Module.to`` makes; no gradients), integer
        # ones (CDF tables) shared, since coding only reads them
        memo: Dict[int, Any] = {}
        for t in [*source.parameters(), *source.buffers()]:
            if not t.is_floating_point():
                memo[id(t)] = t
            elif isinstance(t, nn.Parameter):
                memo[id(t)] = nn.Parameter(t.detach().double(), requires_grad=False)
            else:
                memo[id(t)] = t.detach().double()
        copied = copy.deepcopy(source, memo)
        for child in list(copied.modules()):
            for attr, sub in list(child._modules.items()):
                if sub is not None and hasattr(sub, "_orig_mod"):
                    child._modules[attr] = sub._orig_mod
        replace_layers(copied)
        return copied


def _eager(module: nn.Module) -> nn.Module:
    return getattr(module, "_orig_mod", module)
