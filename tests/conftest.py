"""Fixtures shared by the test packages."""

from __future__ import annotations

import pytest


@pytest.fixture
def native_calls(monkeypatch):
    """Record every block that goes through the compiled convolution kernel (its work units, or
    the source's shape for a one-call input gradient or convolution), so a test can assert that it really ran."""
    from runtime.kernels.cpu import conv_impl  # noqa: PLC0415

    calls = []
    real = conv_impl._native_block

    def counting(ws, job, unit):
        calls.append(unit)
        return real(ws, job, unit)

    real_bpi = conv_impl._native_bpi_run

    def counting_bpi(dyv, *args):
        calls.append(("input gradient", dyv.shape))
        return real_bpi(dyv, *args)

    real_fwd = conv_impl._native_forward_run

    def counting_fwd(xv, *args):
        calls.append(("convolution", xv.shape))
        return real_fwd(xv, *args)

    monkeypatch.setattr(conv_impl, "_native_block", counting)
    monkeypatch.setattr(conv_impl, "_native_bpi_run", counting_bpi)
    monkeypatch.setattr(conv_impl, "_native_forward_run", counting_fwd)
    return calls
