"""Seeds one test's world in the shared Milvus server (pymilvus 2.3).

Two collections of chunks cut from several sources, two agents (a user and a role each, both
granted Search and Query on both collections) and an admin user Firebreak acts as. Every name
starts with the test's prefix, so tests sharing the server never see each other's objects.

usage: seed.py HOST:PORT PREFIX      (connects as root; prints the names made, as JSON)
"""

import json
import random
import sys

from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, Role, connections, utility

ROOT_PASSWORD = "Milvus"  # Milvus' documented default for root.
DIM = 8
SOURCES = ["wiki:handbook", "wiki:policies", "crm:accounts", "email:inj-4471"]
PRIVILEGES = ["Search", "Query"]


def main() -> None:
    address, prefix = sys.argv[1], sys.argv[2]
    host, port = address.rsplit(":", 1)
    connections.connect(alias="root", host=host, port=port, user="root", password=ROOT_PASSWORD)
    rng = random.Random(prefix)
    collections = {"kb": f"{prefix}_kb", "secrets": f"{prefix}_secrets"}
    fields = [
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("source_id", DataType.VARCHAR, max_length=64),
        FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=DIM),
    ]
    for name in collections.values():
        collection = Collection(name, CollectionSchema(fields), using="root")
        rows = 400
        collection.insert(
            [
                list(range(rows)),
                [SOURCES[i % len(SOURCES)] for i in range(rows)],
                [[rng.random() for _ in range(DIM)] for _ in range(rows)],
            ]
        )
        collection.flush()
        collection.create_index(
            "embedding", {"index_type": "HNSW", "metric_type": "L2", "params": {"M": 8, "efConstruction": 64}}
        )
        collection.load()

    agents = {}
    for agent in ("a", "b"):
        user, role, password = f"{prefix}_user_{agent}", f"{prefix}_agent_{agent}", f"pw-{prefix}-{agent}"
        utility.create_user(user, password, using="root")
        r = Role(role, using="root")
        r.create()
        r.add_user(user)
        for name in collections.values():
            for privilege in PRIVILEGES:
                r.grant("Collection", name, privilege)
        agents[agent] = {"user": user, "password": password, "role": role}

    firebreak = {"user": f"{prefix}_firebreak", "password": f"fb-{prefix}-secret"}
    utility.create_user(firebreak["user"], firebreak["password"], using="root")
    Role("admin", using="root").add_user(firebreak["user"])
    print(json.dumps({"collections": collections, "agents": agents, "firebreak": firebreak}))


if __name__ == "__main__":
    main()
