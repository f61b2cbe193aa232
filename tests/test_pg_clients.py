"""`actorq.connect("postgresql://...")`: a client of whichever runtime leads the journal,
found through the address the leader advertised in the lease row, looked up again at each
reconnection, so a client follows a takeover."""

# Stays on Runtime: leaders of a journal in PostgreSQL and the clients that find them (it makes its
# clients itself).

from __future__ import annotations

import anyio
import pytest

from actorq import ConnectionLostError, InvalidOptionError, Runtime, connect


async def add_through(client: object, value: int) -> int:
    """Add through a client, retrying a call the lost connection may not have applied."""
    while True:
        try:
            job = await client.queue("q").add("x", value)  # type: ignore[attr-defined]
        except ConnectionLostError:
            await anyio.sleep(0.05)
            continue
        return int(job.id)


async def test_a_client_of_the_journal_follows_the_leader_through_a_takeover(
    pg_url: str,
) -> None:
    led = anyio.Event()
    step_down = anyio.Event()
    gone = anyio.Event()
    leaders: list[Runtime] = []

    async def lead() -> None:
        async with Runtime(pg_url, listen="127.0.0.1:0") as rt:
            leaders.append(rt)
            led.set()
            await step_down.wait()
        gone.set()  # its lease is released

    async with anyio.create_task_group() as tg:
        tg.start_soon(lead)
        await led.wait()
        (first,) = leaders
        async with connect(pg_url) as client:
            before = await add_through(client, 1)
            got = await first.queue("q").get_job(before)
            assert got is not None and got.data == 1
            step_down.set()
            await gone.wait()
            async with Runtime(pg_url, listen="127.0.0.1:0") as second:
                assert second.address != first.address
                with anyio.fail_after(20):
                    after = await add_through(client, 2)
                got = await second.queue("q").get_job(after)
                assert got is not None and got.data == 2
                assert (await second.queue("q").get_job(before)) is not None


async def test_a_client_finds_no_leader_at_once(pg_url: str) -> None:
    async with Runtime(pg_url):  # leads, but does not listen
        with pytest.raises(ConnectionRefusedError, match=r"no leader of .* listens now"):
            async with connect(pg_url):
                pass
    with pytest.raises(InvalidOptionError) as info:
        connect(pg_url + "?actorq_ttl=no")
    assert info.value.field == "actorq_ttl"
