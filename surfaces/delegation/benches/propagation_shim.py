"""The shim side of the propagation bench: follows one agent's feed document with the real
FeedClient and prints `version receive_time_ns` for every document it receives."""

import sys
import time

from firebreak_shim import FeedClient

url, token, agent = sys.argv[1:4]


def received(doc):
    print(doc["version"], time.time_ns(), flush=True)


client = FeedClient(url, token, [agent])
client.on_change(received)
client.start()
print("ready", flush=True)
sys.stdin.read()  # runs until the bench closes stdin
client.close()
