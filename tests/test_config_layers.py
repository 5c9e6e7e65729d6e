"""The pure parts of layered configuration: merge with provenance, nested layers,
changed paths, the watched path (no server)."""

import pytest

from link.etcd import EtcdInvalidTree, codec
from link.etcd.adapters.layers import common_path, covers, merge, normalize, reading_of
from link.etcd.adapters.live import diff_paths


def test_merge_is_deep_and_records_the_layer_of_each_leaf() -> None:
    defaults = {"db": {"host": "localhost", "port": 5432}, "tags": ["a", "b"], "debug": False}
    prod = {"db": {"host": "db.prod"}, "tags": ["c"]}
    host = {"debug": True, "db": {}}
    merged, origins = merge([defaults, prod, host])
    assert merged == {"db": {"host": "db.prod", "port": 5432}, "tags": ["c"], "debug": True}
    assert origins == {
        ("db", "host"): 1,
        ("db", "port"): 0,
        ("tags",): 1,  # a list replaces, it is not merged
        ("debug",): 2,
    }
    assert defaults["db"] == {"host": "localhost", "port": 5432}  # inputs untouched


def test_a_leaf_replaces_a_directory_and_back() -> None:
    merged, origins = merge([{"db": {"host": "h", "port": 1}}, {"db": "sqlite://"}])
    assert merged == {"db": "sqlite://"}
    assert origins == {("db",): 1}
    merged, origins = merge([{"db": "sqlite://"}, {"db": {"host": "h"}}])
    assert merged == {"db": {"host": "h"}}
    assert origins == {("db", "host"): 1}


def test_a_nested_layer_is_cut_out_of_the_outer_one() -> None:
    paths = ["/config/prod", "/config/prod/web-1"]
    keys = ["/p/config/prod", "/p/config/prod/web-1"]
    outer = codec.flatten(codec.encode({"port": 1, "web-1": {"port": 2}}), keys[0])
    inner = codec.flatten(codec.encode({"port": 2}), keys[1])
    reading = reading_of(paths, keys, 7, [outer, inner])
    assert reading.layers[0].tree == {"port": 1}
    assert reading.tree == {"port": 2}
    assert reading.revision == 7
    assert reading.where(("port",)) == "'/p/config/prod/web-1/port'"
    assert reading.origin(("port",)) is reading.layers[1]
    assert reading.where(("missing",)) is None


def test_list_items_are_named_by_index() -> None:
    reading = reading_of(["/c"], ["/c"], 1, [codec.flatten(codec.encode({"w": [1, "x"]}), "/c")])
    assert reading.where(("w", 1)) == "'/c/w' item [1]"


def test_changed_paths_compare_types_too() -> None:
    old = {"db": {"host": "h", "port": 1}, "debug": False, "w": [1]}
    new = {"db": {"host": "h", "port": 1.0}, "debug": 0, "w": [1], "extra": {"a": 1}}
    assert diff_paths(old, new) == ["db.port", "debug", "extra.a"]
    assert diff_paths(None, {"a": {"b": 1}, "c": 2}) == ["a.b", "c"]
    assert diff_paths({"a": {"b": 1}}, {}) == ["a.b"]
    assert diff_paths(old, old) == []


def test_watched_path_and_coverage() -> None:
    assert common_path(["/config/defaults", "/config/prod/web-1"]) == "/config"
    assert common_path(["/a", "/b"]) == "/"
    assert covers("/config/prod", "/config/prod/port")
    assert covers("/config/prod", "/config/prod")
    assert not covers("/config/prod", "/config/production/port")
    assert covers("/", "/anything")


def test_layer_paths_are_checked() -> None:
    assert normalize("config/prod/") == ["/config/prod"]
    with pytest.raises(EtcdInvalidTree, match="at least one"):
        normalize([])
    with pytest.raises(EtcdInvalidTree, match="twice"):
        normalize(["/a", "a/"])
    with pytest.raises(EtcdInvalidTree):
        normalize(["/a//b"])
