"""The APIs and v3 transports the suite runs on: ``v3-grpc``, ``v3-gateway``, ``v2``."""

from typing import TypedDict

APIS = ["v3-grpc", "v3-gateway", "v2"]


class Connection(TypedDict, total=False):
    """The client keyword arguments that select an API (``**connection(api)``)."""

    api: str
    transport: str


def connection(api: str) -> Connection:
    """The settings that select ``api``.

    ``'v3-gateway'`` → ``{'api': 'v3', 'transport': 'gateway'}``.
    """
    name, _, transport = api.partition("-")
    return {"api": name, "transport": transport} if transport else {"api": name}
