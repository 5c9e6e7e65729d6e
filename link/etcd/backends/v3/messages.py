"""etcd's protobuf messages (``etcd_v3.proto``), loaded into a private descriptor pool.

The classes here are made at import from the serialized descriptor in
``_descriptor.py``: no ``protoc``-generated module, so nothing checks the
protobuf runtime's version (python-etcd3 broke when protobuf 4 did), and nothing
is registered in protobuf's default pool, where another etcd library's
``kv.proto``/``rpc.proto`` would collide with ours.  Works with protobuf 4.21
and later (the upb runtime).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, message_factory

from ._descriptor import SERIALIZED

PACKAGE = "link_etcd.v3"

_POOL = descriptor_pool.DescriptorPool()
_POOL.AddSerializedFile(SERIALIZED)


def _message(name: str) -> Any:
    descriptor = _POOL.FindMessageTypeByName(f"{PACKAGE}.{name}")
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is not None:  # protobuf >= 4.22
        return get_class(descriptor)
    return message_factory.MessageFactory(_POOL).GetPrototype(descriptor)  # pragma: no cover


KeyValue = _message("KeyValue")
RangeRequest = _message("RangeRequest")
RangeResponse = _message("RangeResponse")
PutRequest = _message("PutRequest")
PutResponse = _message("PutResponse")
DeleteRangeRequest = _message("DeleteRangeRequest")
DeleteRangeResponse = _message("DeleteRangeResponse")
RequestOp = _message("RequestOp")
Compare = _message("Compare")
TxnRequest = _message("TxnRequest")
TxnResponse = _message("TxnResponse")
CompactionRequest = _message("CompactionRequest")
CompactionResponse = _message("CompactionResponse")
WatchRequest = _message("WatchRequest")
WatchCreateRequest = _message("WatchCreateRequest")
WatchProgressRequest = _message("WatchProgressRequest")
WatchResponse = _message("WatchResponse")
LeaseGrantRequest = _message("LeaseGrantRequest")
LeaseGrantResponse = _message("LeaseGrantResponse")
LeaseRevokeRequest = _message("LeaseRevokeRequest")
LeaseRevokeResponse = _message("LeaseRevokeResponse")
LeaseKeepAliveRequest = _message("LeaseKeepAliveRequest")
LeaseKeepAliveResponse = _message("LeaseKeepAliveResponse")
LeaseTimeToLiveRequest = _message("LeaseTimeToLiveRequest")
LeaseTimeToLiveResponse = _message("LeaseTimeToLiveResponse")
MemberListRequest = _message("MemberListRequest")
MemberListResponse = _message("MemberListResponse")
StatusRequest = _message("StatusRequest")
StatusResponse = _message("StatusResponse")
AuthenticateRequest = _message("AuthenticateRequest")
AuthenticateResponse = _message("AuthenticateResponse")
