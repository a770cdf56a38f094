"""op_db entries of the control-flow ops (While, If).

Their ``func`` attrs name frames of the node's own graph (placeholders, captured tensors and
results built by BuildWhileLoop / Cond), which the generic builders (constants and
placeholders passed straight to the wrapper) cannot supply; tests/ops/test_control_flow.py
tests them by hand: loops and conditionals against Python computations, static shapes,
captured tensors, nesting, folding, and build- and run-time errors.
"""

from __future__ import annotations

from tests.op_db import OpInfo

_WHY = ("func attrs name frames built by BuildWhileLoop / Cond: tested by hand in "
        "tests/ops/test_control_flow.py")

ENTRIES = [OpInfo("While", skip_generic=_WHY), OpInfo("If", skip_generic=_WHY)]
