"""``GET /api/chats`` a page at a time: newest first, by cursor, capped at 200."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .conftest import StartService
from .test_errors import assert_error

pytestmark = pytest.mark.anyio


async def make_chats(client: httpx.AsyncClient, url: str, count: int) -> list[str]:
    """``count`` chats, one after the other: the newest last."""
    made = []
    for number in range(count):
        async with client.stream("POST", url + "/api/ask", json={"question": f"q{number}"}) as r:
            assert r.status_code == 200
            await r.aread()
        made.append(f"q{number}")
    return made


async def all_pages(client: httpx.AsyncClient, url: str, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        body = (await client.get(url + "/api/chats", params=params)).json()
        pages.append([chat["title"] for chat in body["chats"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


async def test_pages_follow_each_other_newest_first_without_repeats(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    service = start_service(ASKSTREAM_DEMO_DELAY="0")
    made = await make_chats(client, service.url, 5)
    assert await all_pages(client, service.url, 2) == [["q4", "q3"], ["q2", "q1"], ["q0"]]
    assert await all_pages(client, service.url, 5) == [made[::-1]]
    # A chat made while paging is not seen twice, and hides none.
    first = (await client.get(service.url + "/api/chats", params={"limit": 2})).json()
    await make_chats(client, service.url, 1)
    rest = (
        await client.get(service.url + "/api/chats", params={"cursor": first["nextCursor"]})
    ).json()
    assert [chat["title"] for chat in rest["chats"]] == ["q2", "q1", "q0"]


async def test_a_page_is_50_by_default_and_never_more_than_200(
    start_service: StartService, client: httpx.AsyncClient
) -> None:
    service = start_service(ASKSTREAM_DEMO_DELAY="0")
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(limits=limits, cookies=client.cookies) as many:
        await many.get(service.url + "/")  # one session for all of them
        await asyncio.gather(*(make_chats(many, service.url, 26) for _ in range(8)))
        default = (await many.get(service.url + "/api/chats")).json()
        capped = (await many.get(service.url + "/api/chats", params={"limit": 1000})).json()
        rest = (
            await many.get(service.url + "/api/chats", params={"cursor": capped["nextCursor"]})
        ).json()
    assert len(default["chats"]) == 50
    assert default["nextCursor"] is not None
    assert len(capped["chats"]) == 200
    assert len(rest["chats"]) == 8
    assert rest["nextCursor"] is None


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "not-a-cursor"}, 400),
        ({"cursor": "WyJub3QgYSB0aW1lIiwiYyJd"}, 400),  # ["not a time","c"]
        ({"cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwiYyJd"}, 400),  # a time without a zone
        ({"limit": 0}, 422),
        ({"limit": "many"}, 422),
    ],
    ids=["garbage", "not-a-time", "naive-time", "zero", "text"],
)
async def test_a_cursor_or_limit_that_is_not_one_is_refused(
    start_service: StartService, client: httpx.AsyncClient, params: dict[str, str], status: int
) -> None:
    service = start_service()
    assert_error(await client.get(service.url + "/api/chats", params=params), status)
