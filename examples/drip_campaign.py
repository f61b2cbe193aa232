"""A drip campaign as one step job per recipient: send → wait 24 h → check → follow up.

Each recipient is one job whose ``data["step"]`` says where it is. ``move_to_delayed`` puts
the job to sleep until a given time and records the next step in the same transition; the
processor unwinds and runs again, at that step, when the time comes. Under a `VirtualClock`
the whole 25-hour campaign runs in milliseconds.

Run it: ``python examples/drip_campaign.py``
"""

from __future__ import annotations

from typing import Any

import anyio

from actorq import Job, Runtime, VirtualClock

HOUR = 3600.0
#: Who opens the first mail (a stand-in for a real tracking lookup).
OPENS = {"ada@example.com", "grace@example.com"}
RECIPIENTS = ["ada@example.com", "alan@example.com", "grace@example.com", "linus@example.com"]


async def main(clock: VirtualClock | None = None) -> dict[str, Any]:
    """Run the campaign; return what was sent, when, and how each recipient's job ended."""
    clock = clock or VirtualClock()
    outbox: list[tuple[float, str, str]] = []  # (hours since start, what, to)
    start = clock.now()

    def send(what: str, to: str) -> None:
        outbox.append(((clock.now() - start) / HOUR, what, to))

    async def drip(job: Job) -> str:
        to = job.data["to"]
        step = job.data["step"]
        if step == "send":
            send("welcome", to)
            await job.move_to_delayed(clock.now() + 24 * HOUR, next_step="check")
        if step == "check":
            if to in OPENS:
                return "opened"
            await job.move_to_delayed(clock.now() + HOUR, next_step="followup")
        if step == "followup":
            send("follow-up", to)
            return "followed up"
        raise ValueError(f"unknown step {step!r}")

    async with Runtime(clock=clock) as rt:
        queue = rt.queue("drip-campaign")
        rt.worker(queue, drip, concurrency=10)
        jobs = await queue.add_bulk(
            [{"name": "drip", "data": {"to": to, "step": "send"}} for to in RECIPIENTS]
        )
        results = {job.data["to"]: await job.wait_until_finished() for job in jobs}
        return {
            "results": results,
            "outbox": outbox,
            "hours": {job.data["to"]: ((job.finished_at or start) - start) / HOUR for job in jobs},
            "attempts_started": {job.data["to"]: job.attempts_started for job in jobs},
            "attempts_made": {job.data["to"]: job.attempts_made for job in jobs},
            "virtual_hours": (clock.now() - start) / HOUR,
        }


def report(result: dict[str, Any]) -> None:
    for hours, what, to in result["outbox"]:
        print(f"t={hours:5.1f} h  sent {what:9} to {to}")
    for to, outcome in result["results"].items():
        started = result["attempts_started"][to]
        print(f"{to:20} {outcome:12} after {result['hours'][to]:.0f} h ({started} steps)")
    print(f"campaign took {result['virtual_hours']:.0f} virtual hours")


if __name__ == "__main__":
    report(anyio.run(main))
