"""The cluster summary and the nodes with their GPUs."""

from __future__ import annotations

from aiohttp import web

from services.api import core
from services.api.handling import SETTINGS, STATE, VIEWS, Route, error, json
from services.api.schemas import ClusterSummary, NodeList, NodeView


async def summary(request: web.Request) -> web.Response:
    state, cluster = request.app[STATE], request.app[SETTINGS].cluster
    return json(request.app[VIEWS].get("summary", state.version,
                                       lambda: core.cluster_summary(state, cluster)))


async def nodes(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json(request.app[VIEWS].get("nodes", state.version,
                                       lambda: NodeList(nodes=core.node_list(state))))


async def node(request: web.Request) -> web.Response:
    state, name = request.app[STATE], request.match_info["node"]
    if name not in state.inventory and name not in state.samples and not (
        state.scheduler and any(n.node == name for n in state.scheduler.nodes)
    ):
        raise error(404, f"no node {name!r}")
    return json(core.node_view(state, name))


ROUTES = [
    Route("GET", "/api/v1/cluster", summary, "Cluster summary: GPUs by model and state, "
          "allocated and busy share, queue depth, idle-allocated GPUs, power now",
          response=ClusterSummary, tag="cluster"),
    Route("GET", "/api/v1/nodes", nodes, "Nodes with their GPUs, latest sample and health",
          response=NodeList, tag="nodes"),
    Route("GET", "/api/v1/nodes/{node}", node, "One node in detail", response=NodeView,
          errors=(401, 403, 404), tag="nodes"),
]
