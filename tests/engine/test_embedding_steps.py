"""How the embedder cuts a group of inputs into decode steps (:func:`next_step`), without the model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chunkwise.engine._embedding import next_step


def steps(lengths: list[int], limit: int) -> list[tuple[list[int], int]]:
    remaining = list(lengths)
    taken: list[tuple[list[int], int]] = []
    while any(remaining):
        members, piece = next_step(remaining, limit)
        for index in members:
            remaining[index] -= piece
            assert remaining[index] >= 0
        taken.append((members, piece))
    return taken


def test_inputs_of_one_length_go_whole_in_one_step() -> None:
    assert steps([5, 5, 5], 64) == [([0, 1, 2], 5)]


def test_a_step_never_leaves_an_input_with_one_token() -> None:
    assert steps([5, 6], 64) == [([0], 5), ([1], 6)]
    assert steps([5, 7], 64) == [([0, 1], 5), ([1], 2)]


def test_one_token_inputs_go_in_steps_of_their_own() -> None:
    assert steps([1, 4, 1], 64) == [([0, 2], 1), ([1], 4)]


@given(st.lists(st.integers(1, 40), min_size=1, max_size=8), st.integers(40, 200))
def test_every_input_is_evaluated_whole_in_pieces_of_more_than_one_token(lengths: list[int], limit: int) -> None:
    done = [0] * len(lengths)
    for members, piece in steps(lengths, limit):
        assert members and len(members) * piece <= limit
        for index in members:
            done[index] += piece
            assert piece > 1 or lengths[index] == 1
    assert done == lengths
