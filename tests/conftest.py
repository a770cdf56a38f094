"""Fixtures shared by the test packages."""

from __future__ import annotations

import pytest


@pytest.fixture
def native_calls(monkeypatch):
    """Record every block that goes through the compiled convolution kernel (the list of
    work units), so a test can assert that the compiled path really ran."""
    from runtime.kernels.cpu import conv_impl  # noqa: PLC0415

    calls = []
    real = conv_impl._native_block

    def counting(ws, job, unit):
        calls.append(unit)
        return real(ws, job, unit)

    monkeypatch.setattr(conv_impl, "_native_block", counting)
    return calls
