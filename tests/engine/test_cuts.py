"""The canonical grouping of a prompt's tokens into decodes, which makes cached prefixes safe to reuse."""

from __future__ import annotations

from chunkwise.engine._batching import canonical_cuts


def test_pieces_follow_a_grid_and_the_last_token_is_alone() -> None:
    assert canonical_cuts(150, (), 64) == [0, 64, 128, 149, 150]


def test_message_boundaries_start_new_pieces_and_the_grid_restarts_there() -> None:
    assert canonical_cuts(150, (30, 100), 64) == [0, 30, 94, 100, 149, 150]


def test_boundaries_at_the_edges_add_nothing() -> None:
    assert canonical_cuts(10, (0, 9, 10, 3, 3), 64) == [0, 3, 9, 10]


def test_a_one_token_prompt_is_one_piece() -> None:
    assert canonical_cuts(1, (), 64) == [0, 1]


def test_a_prompt_shares_its_prefix_cuts_with_any_longer_prompt_from_the_same_messages() -> None:
    # A conversation's next turn keeps every cut of the earlier turns' messages.
    earlier = canonical_cuts(90, (5, 40), 16)
    later = canonical_cuts(300, (5, 40, 120, 200), 16)
    shared = [cut for cut in earlier if cut <= 40]
    assert later[: len(shared)] == shared
