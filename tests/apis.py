"""The APIs and v3 transports the suite runs on: ``v3-grpc``, ``v3-gateway``, ``v2``."""

APIS = ["v3-grpc", "v3-gateway", "v2"]


def connection(api: str) -> dict[str, str]:
    """The settings that select ``api``.

    ``'v3-gateway'`` → ``{'api': 'v3', 'transport': 'gateway'}``.
    """
    name, _, transport = api.partition("-")
    return {"api": name, "transport": transport} if transport else {"api": name}
