"""The score NodeAdminService.ListNodeStates shows per node and model (the console's operator view)."""

from __future__ import annotations

from atoma_proxy.core.node_admin_service import candidate_scores, node_state
from tests.core.nodes.support import make_node


def test_candidates_are_scored_and_the_cheaper_of_two_equal_nodes_scores_lower() -> None:
    cheap, dear = make_node("cheap", price=100), make_node("dear", price=400, models=("m", "other"))
    drained, down = make_node("drained"), make_node("down")
    for node in (cheap, dear, drained):
        node.healthy = True
    drained.draining = True
    down.healthy = False

    scores = candidate_scores([cheap, dear, drained, down], price_weight=0.5, now=1000.0)

    assert set(scores) == {("cheap", "m"), ("dear", "m"), ("dear", "other")}
    assert 0 < scores[("cheap", "m")] < scores[("dear", "m")]
    states = {s.model: s.score for s in node_state(dear, 1000.0, scores).model_states}
    assert states == {"m": scores[("dear", "m")], "other": scores[("dear", "other")]}
    # A node that may not take requests shows 0, as does every node without scores given.
    assert [s.score for s in node_state(drained, 1000.0, scores).model_states] == [0.0]
    assert [s.score for s in node_state(cheap, 1000.0).model_states] == [0.0]
