"""The Ray Data executor gives the local executor's embeddings and index, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from index import bundle
from index.build import build_index
from tests.segments import data_folder

# Ray Data warns about its own deprecated settings on start-up; nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def local_ray():
    # a small local instance: tests run on a couple of cores
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_and_local_executors_build_the_same_index(local_ray, tiny_engine, gallery, tmp_path):
    opts = {"batch_size": 4, "shard_size": 10}
    local = build_index(tiny_engine, gallery, tmp_path / "local", workers=0, **opts)
    # two actors: shards are encoded out of order, in parallel, and still land in order
    remote = build_index(tiny_engine, gallery, tmp_path / "ray", executor="ray", ray_actors=2,
                         **opts)
    a, b = data_folder(tmp_path / "local"), data_folder(tmp_path / "ray")
    np.testing.assert_array_equal(np.load(a / bundle.EMBEDDINGS_FILE),
                                  np.load(b / bundle.EMBEDDINGS_FILE))
    assert (remote.count, remote.skipped) == (local.count, local.skipped) == (30, 1)
    # FAISS index, stores and report all identical: the same segment, by content
    assert remote.segments == local.segments and remote.files == local.files
