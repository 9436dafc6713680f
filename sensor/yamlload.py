"""YAML loading with the document's size bounded before it is built.

PyYAML shares one object between every alias of an anchor, so a few hundred
bytes of nested aliases ("billion laughs") describe a document of billions of
nodes; anything that walks it (validation, str(), JSON output) then runs out
of memory. The node graph is measured first, counting each alias as a full
copy, and refused past `max_nodes`; recursive aliases and too-deep nesting are
refused too."""
from __future__ import annotations

from typing import Any

import yaml

MAX_NODES = 200_000   # far above any real config or protocol definition


class YamlError(ValueError):
    """The text is not YAML, or describes a document too large or recursive to load."""


def load_yaml(text: str, max_nodes: int = MAX_NODES) -> Any:
    """The document in `text` (None when empty); YamlError on bad or oversized input."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlError("nested too deeply to load") from None
        if node is None:
            return None
        size = expanded_size(node, max_nodes)
        if size > max_nodes:
            raise YamlError(f"expands to more than {max_nodes:,} nodes (aliases of aliases?); refused")
        try:
            return loader.construct_document(node)
        except RecursionError:
            raise YamlError("nested too deeply to load") from None
    except yaml.YAMLError as e:
        raise YamlError(f"not valid YAML: {e}") from None
    finally:
        loader.dispose()


def expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes in the document with every alias expanded, counted without
    expanding (each shared node is sized once); stops early past `limit`.
    YamlError for a node that contains itself."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        kids = _children(node)
        if children_done:
            visiting.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(k)] for k in kids))
            continue
        if key in visiting:
            raise YamlError("an alias refers to a node that contains it (a recursive document); refused")
        visiting.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in visiting:
                raise YamlError("an alias refers to a node that contains it (a recursive document); refused")
            if id(kid) not in sizes:
                stack.append((kid, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
