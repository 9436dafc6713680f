"""YAML with alias expansion bounded: a tiny document that would expand to
billions of nodes, a recursive one and a too-deep one are refused at once."""
from __future__ import annotations

import pytest

from sensor.yamlload import YamlError, load_yaml


def laughs(levels: int, width: int = 9) -> str:
    """The 'billion laughs' shape: each level lists `width` aliases of the one before."""
    text = f"l0: &l0 [{', '.join(['lol'] * width)}]\n"
    for i in range(1, levels + 1):
        text += f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]\n"
    return text


def test_a_billion_laughs_is_refused_before_it_is_built():
    text = laughs(9)
    assert len(text) < 600
    with pytest.raises(YamlError, match="more than 200,000 nodes"):
        load_yaml(text)


def test_aliases_within_the_bound_load_as_usual():
    doc = load_yaml(laughs(2) + "base: &b {port: 502}\nuse: *b\n")
    assert doc["l2"] == [[["lol"] * 9] * 9] * 9
    assert doc["use"] == {"port": 502}
    assert load_yaml("") is None


def test_the_bound_counts_every_expanded_node():
    text = "x: &x [a, a]\ny: [*x, *x, *x]\n"
    # document: mapping(1) + keys(2) + x list(1 + 2) + y list(1 + 3 * 3) = 16 nodes
    assert load_yaml(text, max_nodes=16)["y"] == [["a", "a"]] * 3
    with pytest.raises(YamlError):
        load_yaml(text, max_nodes=15)


@pytest.mark.parametrize("text, words", [
    ("a: &a [1, *a]\n", "recursive"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ("a: [unclosed\n", "not valid YAML"),
])
def test_recursive_deep_and_broken_documents_are_refused(text, words):
    with pytest.raises(YamlError, match=words):
        load_yaml(text)
