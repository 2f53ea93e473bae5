"""One local Ray for the farm's Ray tests (its start-up takes seconds): 3 logical CPUs, two for pipeline workers and
one for baking libraries, a small object store (only small reports pass through it)."""

import pytest


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2)
    yield ray
    ray.shutdown()
