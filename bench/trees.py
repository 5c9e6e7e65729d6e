"""Deterministic benchmark trees: nested dicts and lists with exactly N leaves.

The shape imitates a large configuration or inventory document: a root
``dict`` of sections, nested ``dict`` records and ``list`` s (of scalars or of
records), with short string and number leaves (plus a few booleans).  A leaf is
one etcd key once stored (``len(codec.flatten(codec.encode(tree), key)) == N``).

:func:`make_tree` builds the same shape for a given ``(leaves, seed)`` whatever
the ``variant``; the variant only changes every leaf's value, so variant 1 is
"the same tree with new values" for the replace benchmark.
"""

from __future__ import annotations

import random
from typing import Any

from link.etcd import codec

__all__ = ["SEED", "leaf_count", "make_tree"]

#: Seed of every benchmark tree (structure and values).
SEED = 20261121

#: Names of dict entries: short, config-like, never ``_``-prefixed (hidden on
#: etcd v2), never 20 digits, no ``%`` or ``/``: stored as they are.
_NAMES = (
    "api", "app", "auth", "backend", "cache", "cluster", "config", "cpu", "db",
    "disk", "dns", "endpoint", "env", "feature", "frontend", "gateway", "group",
    "health", "host", "image", "ingress", "job", "key", "label", "limit", "log",
    "memory", "metric", "mode", "name", "node", "owner", "path", "policy", "pool",
    "port", "proxy", "queue", "region", "replica", "role", "route", "rule",
    "schedule", "secret", "service", "shard", "size", "storage", "tag", "team",
    "tenant", "timeout", "tls", "user", "version", "volume", "weight", "worker", "zone",
)  # fmt: skip
#: Words for string leaves; none reads as JSON, so each is stored as plain text.
_WORDS = (
    "alpha", "beta", "gamma", "delta", "eu-west", "us-east", "ap-south", "primary",
    "replica", "enabled", "disabled", "standby", "nginx", "postgres", "redis",
    "kafka", "debug", "info", "warning", "round-robin", "least-conn", "tcp", "http",
    "grpc", "blue", "green", "canary", "stable", "ops", "dev", "qa", "prod",
)  # fmt: skip

#: Deepest nesting below the root; at this depth a node's leaves are its children.
MAX_DEPTH = 10
#: Most children a container gets (the root gets more, see :func:`_fanout`).
MAX_FANOUT = 9


class _Values:
    """Leaf values: the kind comes from the structure RNG, the value from its own RNG."""

    def __init__(self, seed: int, variant: int) -> None:
        self._rng = random.Random(seed * 7919 + 1)
        self._variant = variant

    def leaf(self, kind: float) -> Any:
        rng, v = self._rng, self._variant
        word = rng.choice(_WORDS)
        number = rng.randrange(1, 65536)
        if kind < 0.40:
            return f"{word}-{number % 100 + 10 * v}" if v else word
        if kind < 0.55:
            return f"{word}-{number % 50 + v}.internal"
        if kind < 0.85:
            return number + 100_003 * v
        if kind < 0.95:
            return round(number / 1024, 3) + 0.25 * v
        return bool((number + v) % 2)


def _fanout(rng: random.Random, budget: int, depth: int) -> int:
    if depth == 0:  # a root of many sections, like a real document
        root: float = budget**0.5  # int ** float is typed Any (a negative base gives complex)
        return min(budget, max(2, round(root / 2)))
    return min(budget, rng.randint(2, MAX_FANOUT))


def _split(rng: random.Random, budget: int, parts: int) -> list[int]:
    """``parts`` positive integers summing to ``budget`` (a random composition)."""
    if parts <= 1:
        return [budget]
    cuts = sorted(rng.sample(range(1, budget), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, budget], strict=True)]


def _node(rng: random.Random, values: _Values, budget: int, depth: int) -> Any:
    if budget == 1 and depth > 0:
        return values.leaf(rng.random())
    if depth >= MAX_DEPTH:
        return [values.leaf(rng.random()) for _ in range(budget)]
    sizes = _split(rng, budget, _fanout(rng, budget, depth))
    if depth > 0 and rng.random() < 0.3:
        return [_node(rng, values, size, depth + 1) for size in sizes]
    node: dict[str, Any] = {}
    for size in sizes:
        name = rng.choice(_NAMES)
        if name in node:
            name = f"{name}{len(node)}"
        node[name] = _node(rng, values, size, depth + 1)
    return node


def make_tree(leaves: int, seed: int = SEED, variant: int = 0) -> dict[str, Any]:
    """A ``dict`` tree that is stored as exactly ``leaves`` etcd keys.

    :param leaves: number of leaves, >= 1.
    :param seed: structure and value seed; the same seed gives the same tree.
    :param variant: 0 for the base values; another number keeps the shape (every
        key) and changes every leaf's value.
    :raises ValueError: ``leaves`` < 1.
    """
    if leaves < 1:
        raise ValueError("a benchmark tree needs at least one leaf")
    tree = _node(random.Random(seed), _Values(seed, variant), leaves, 0)
    assert isinstance(tree, dict)
    return tree


def leaf_count(tree: Any) -> int:
    """Number of etcd keys ``tree`` is stored as (by :mod:`link.etcd.codec`)."""
    return len(codec.flatten(codec.encode(tree), ""))
