"""The cluster model: which GPUs a member takes, and the free shapes nodes are grouped by."""

from __future__ import annotations

import pytest
from sched_builders import make_cluster, make_node

from services.scheduler.cluster import USABLE, Cluster, NodeSpec

TWO_DOMAINS = (0, 0, 0, 0, 1, 1, 1, 1)


def _node(used: tuple[int, ...], domains: tuple[int, ...] = TWO_DOMAINS,
          share: int = 1000) -> Cluster:
    return make_cluster().node(make_node("a").domains(*domains)).use("a", used, share).build()


@pytest.mark.parametrize(("name", "cluster", "gpus", "milli", "share", "picked"), [
    ("one domain: the first free GPUs", _node((0,), (0,) * 8), 3, 1000, -1, (1, 2, 3)),
    ("fits one domain: the tightest", _node((0,)), 2, 1000, -1, (1, 2)),
    ("fits one domain: the tightest, not the first", _node((4, 5, 6)), 1, 1000, -1, (7,)),
    ("equal domains: the lower", _node(()), 4, 1000, -1, (0, 1, 2, 3)),
    ("spans domains: the largest first", _node((0, 1, 4)), 5, 1000, -1, (2, 3, 5, 6, 7)),
    ("spans three domains", _node((0, 3, 6), (0, 0, 1, 1, 2, 2, 2, 2)), 4, 1000, -1,
     (2, 4, 5, 7)),
    ("a share: the fullest GPU it fits", _node((1, 2), share=600), 1, 300, -1, (1,)),
    ("a share: the GPU with the share asked", _node((1, 2), share=600), 1, 300, 1000, (0,)),
    ("a share: a share asked but absent", _node((1,), share=600), 1, 300, 500, (1,)),
])
def test_pick_gpus(name: str, cluster: Cluster, gpus: int, milli: int, share: int,
                   picked: tuple[int, ...]) -> None:
    assert cluster.pick_gpus(0, gpus, milli, share) == picked, name


@pytest.mark.parametrize(("name", "spec", "usable"), [
    ("online and healthy", NodeSpec("a", "H100", 2), True),
    ("offline", NodeSpec("a", "H100", 2, online=False), False),
    ("every GPU lost", NodeSpec("a", "H100", 2, healthy=(False, False)), False),
    ("one GPU left", NodeSpec("a", "H100", 2, healthy=(False, True)), True),
])
def test_a_shape_says_whether_its_node_is_usable(name: str, spec: NodeSpec,
                                                 usable: bool) -> None:
    c = Cluster()
    c.upsert(spec)
    assert bool(c.shapes.host[c.shape[0], USABLE]) == usable == bool(c.usable_nodes()[0]), name
    c.upsert(NodeSpec("a", "H100", 2))  # back to usable: a new shape
    assert c.shapes.host[c.shape[0], USABLE] == 1
