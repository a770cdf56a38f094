"""Fixtures of the distributed tests: one in-process dask cluster (2 workers, 1 thread each)
shared by the whole directory, so its start-up (about 2 s) is paid once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


class FakeBackend:
    """A ShardBackend that fails the test if anything is sent to a cluster."""

    def __init__(self, n_slots: int = 2):
        self.n_slots = n_slots

    def slots(self):
        return [f"w{i}" for i in range(self.n_slots)]

    def _sent(self, *args, **kwargs):
        raise AssertionError("something was sent to the cluster")

    broadcast = put = submit = gather = run_on_workers = _sent

    def release(self, handles):
        pass

    def handle_key(self, handle):
        return handle


@pytest.fixture
def fake_backend():
    from runtime.distributed import ShardBackend  # noqa: PLC0415

    return type("Fake", (FakeBackend, ShardBackend), {})()
