"""op_db entries of the variable and optimizer-update ops.

Their ``ref`` inputs must be Variables, which the generic builders (constants and
placeholders) cannot supply; tests/runtime/test_variables.py tests them by hand against
independent float64 formulas, error cases included.
"""

from __future__ import annotations

from tests.op_db import OpInfo

_WHY = "ref inputs must be Variables: tested in tests/runtime/test_variables.py"

ENTRIES = [OpInfo(name, skip_generic=_WHY)
           for name in ("VariableV2", "Assign", "AssignAdd", "AssignSub", "IsVariableInitialized",
                        "ApplyGradientDescent", "ApplyMomentum", "ApplyAdam", "ApplyAdagrad",
                        "ApplyRMSProp")]
