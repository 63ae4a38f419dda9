"""ShardedAsyncClient: one httpx client API over several small connection pools."""

from __future__ import annotations

import asyncio

import httpx

from lqs.providers.sharded_client import ShardedAsyncClient


async def test_requests_go_to_the_least_busy_shard_and_all_shards_close() -> None:
    seen: list[int] = []
    release = asyncio.Event()
    arrived = asyncio.Event()
    made: list[httpx.AsyncClient] = []

    def make(connections: int) -> httpx.AsyncClient:
        number = len(made)

        async def answer(request: httpx.Request) -> httpx.Response:
            seen.append(number)
            if len(seen) == 4:
                arrived.set()
            await release.wait()
            return httpx.Response(200, json={"shard": number})

        client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        made.append(client)
        return client

    client = ShardedAsyncClient(make, max_connections=8, shards=4)
    assert len(made) == 4
    pending = [asyncio.create_task(client.post("http://x.example/", json={})) for _ in range(4)]
    await asyncio.wait_for(arrived.wait(), timeout=5)
    assert sorted(seen) == [0, 1, 2, 3]  # four at once: one per shard
    release.set()
    answers = await asyncio.gather(*pending)
    assert sorted(a.json()["shard"] for a in answers) == [0, 1, 2, 3]

    await client.aclose()
    assert all(c.is_closed for c in made)


def test_never_more_shards_than_connections() -> None:
    made: list[int] = []

    def make(connections: int) -> httpx.AsyncClient:
        made.append(connections)
        return httpx.AsyncClient()

    ShardedAsyncClient(make, max_connections=3, shards=16)
    assert made == [1, 1, 1]
    made.clear()
    ShardedAsyncClient(make, max_connections=32, shards=16)
    assert made == [2] * 16
