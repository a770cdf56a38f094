"""The op library (tensorflow::ops): one declaration per op, wrappers generated from it.

    >>> import ops
    >>> dx = ops.Conv2DBackpropInputV2(root, x, w, dy, [1, 2, 2, 1], "SAME",
    ...                                ops.Conv2DBackpropInputV2.Dilations([1, 1, 1, 1]))

Every ``ops/<family>_ops.py`` module is imported here in name order; its op wrappers
(including C++ aliases such as ``ReduceSum = Sum``) and the names in its ``__all__`` are
exported automatically.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from opgraph.wrappers import OpWrapper as _OpWrapper

__all__ = []
FAMILIES = {}       # family module name -> module


def _export_families():
    names = sorted(m.name for m in _pkgutil.iter_modules(__path__) if m.name.endswith("_ops"))
    g = globals()
    for name in names:
        module = _importlib.import_module(f"{__name__}.{name}")
        FAMILIES[name] = module
        public = list(getattr(module, "__all__", ()))
        public += [k for k, v in vars(module).items()
                   if not k.startswith("_") and isinstance(v, type)
                   and issubclass(v, _OpWrapper) and v is not _OpWrapper
                   and v._op_def is not None and k not in public]
        for k in public:
            if k in g and g[k] is not getattr(module, k):
                msg = f"ops: '{k}' is exported by two op modules ({name} and another)"
                raise ImportError(msg)
            g[k] = getattr(module, k)
            __all__.append(k)


_export_families()
