"""The half-precision dtypes the compiled kernels read and write: float16, and bfloat16 where
ml_dtypes is installed (the optional "bfloat16" extra)."""

import numpy as np


def half_dtypes():
    """[float16] plus bfloat16 when ml_dtypes imports, as numpy dtypes."""
    out = [np.dtype(np.float16)]
    try:
        import ml_dtypes  # noqa: PLC0415

        out.append(np.dtype(ml_dtypes.bfloat16))
    except ImportError:
        pass
    return out
