"""Reads what an agent and an operator see in Milvus (pymilvus 2.3), as JSON on stdout.

usage:
  probe.py search HOST:PORT USER PASSWORD COLLECTION...
      one real top-k search per collection as USER: {"COLLECTION": {"ok": true, "sources": [...]}
      or {"ok": false, "code": "PERMISSION_DENIED", "message": "..."}}
  probe.py grants HOST:PORT ROLE...
      every grant of each role, as root: {"ROLE": [[object, objectName, privilege], ...]}
  probe.py add-user HOST:PORT ROLE USER
      as root, gives ROLE to USER too: {"ok": true}
  probe.py grant HOST:PORT ROLE COLLECTION PRIVILEGE
      as root, grants ROLE one more privilege on COLLECTION: {"ok": true}
"""

import json
import sys

import grpc
from pymilvus import Collection, Role, connections

ROOT_PASSWORD = "Milvus"
DIM = 8


def connect(address: str, alias: str, user: str, password: str) -> None:
    host, port = address.rsplit(":", 1)
    connections.connect(alias=alias, host=host, port=port, user=user, password=password)


def search(address: str, user: str, password: str, names: list) -> dict:
    connect(address, "agent", user, password)
    out = {}
    for name in names:
        try:
            hits = Collection(name, using="agent").search(
                [[0.5] * DIM], "embedding", {"metric_type": "L2", "params": {"ef": 64}}, limit=10,
                output_fields=["source_id"],
            )
            out[name] = {"ok": True, "sources": sorted({h.entity.get("source_id") for h in hits[0]})}
        except grpc.RpcError as e:
            out[name] = {"ok": False, "code": e.code().name, "message": e.details()}
        except Exception as e:  # pymilvus wraps some server refusals in its own exceptions
            out[name] = {"ok": False, "code": type(e).__name__, "message": str(e)}
    return out


def grants(address: str, roles: list) -> dict:
    connect(address, "root", "root", ROOT_PASSWORD)
    out = {}
    for role in roles:
        items = Role(role, using="root").list_grants().groups
        out[role] = sorted([g.object, g.object_name, g.privilege] for g in items)
    return out


def add_user(address: str, role: str, user: str) -> dict:
    connect(address, "root", "root", ROOT_PASSWORD)
    Role(role, using="root").add_user(user)
    return {"ok": True}


def grant(address: str, role: str, collection: str, privilege: str) -> dict:
    connect(address, "root", "root", ROOT_PASSWORD)
    Role(role, using="root").grant("Collection", collection, privilege)
    return {"ok": True}


def main() -> None:
    command, address, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    if command == "search":
        result = search(address, rest[0], rest[1], rest[2:])
    elif command == "grants":
        result = grants(address, rest)
    elif command == "add-user":
        result = add_user(address, *rest)
    elif command == "grant":
        result = grant(address, *rest)
    else:
        sys.exit(f"unknown command {command!r}; use search, grants, add-user or grant")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
