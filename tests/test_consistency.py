"""Atomicity and concurrency of v3 writes (v2 has no transactions)."""

import threading
from typing import Any

from link.etcd import EtcdMiddleware
from link.etcd.backends.v3 import V3Backend


def _tree(generation: int) -> dict[str, Any]:
    return {
        "gen": generation,
        "db": {"host": f"h{generation}", "port": 5000 + generation},
        "workers": [f"w{generation}"] * (1 + generation % 4),
        "extra": {f"k{generation % 3}": generation},
    }


def _consistent(tree: dict[str, Any]) -> bool:
    g = tree["gen"]
    return tree == _tree(g)


def test_reader_never_sees_a_mixed_tree(v3: EtcdMiddleware) -> None:
    v3["/cfg"] = _tree(0)
    stop = threading.Event()
    seen: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                tree = v3["/cfg"]
                seen.append(tree)
                if not _consistent(tree):
                    bad.append(tree)
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for generation in range(1, 150):
            v3["/cfg"] = _tree(generation)
    finally:
        stop.set()
        thread.join(30)
    assert errors == [], "the reader thread raised"
    assert not thread.is_alive()
    assert bad == []
    assert len({t["gen"] for t in seen}) > 1, "the reader should have seen several generations"


def test_concurrent_writers_do_not_interleave(v3: EtcdMiddleware) -> None:
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for generation in range(offset, offset + 40):
                v3["/cfg"] = _tree(generation)
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0, 1000, 2000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert _consistent(v3["/cfg"])


def test_rewriting_the_same_tree_sends_no_put(v3: EtcdMiddleware, etcd_server: Any) -> None:
    backend = v3.backend
    assert isinstance(backend, V3Backend)
    v3["/same"] = _tree(3)
    before = backend.read(v3.key("/same"))
    v3["/same"] = _tree(3)
    after = backend.read(v3.key("/same"))
    assert [kv.mod_revision for kv in before.items] == [kv.mod_revision for kv in after.items]


def test_concurrent_large_writers_end_with_one_whole_tree(v3: EtcdMiddleware) -> None:
    """Writes of several txns are not atomic, but the result is one writer's tree."""
    trees = [{f"k{i:04d}": f"{w}-{i}" for i in range(600)} for w in ("a", "b")]
    errors: list[BaseException] = []

    def writer(tree: dict[str, Any]) -> None:
        try:
            for _ in range(3):
                v3["/big"] = tree
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in trees]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert v3["/big"] in trees
