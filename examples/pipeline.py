"""Step jobs and dynamic children together: validate → wait 5 minutes for approval → spawn
one child per item → collect.

One job walks through its steps: ``move_to_delayed(now + 300, "spawn")`` sleeps five minutes
(the approval window) and resumes at ``spawn``; there it adds one child per item and waits
for them with ``move_to_waiting_children``; it resumes at ``collect`` with their values.

Run it: ``python examples/pipeline.py``
"""

from __future__ import annotations

from typing import Any

import anyio

from actorq import Job, Runtime, VirtualClock

APPROVAL_WAIT = 5 * 60.0
ORDER = {
    "order": "A-1001",
    "items": [{"sku": "pen", "qty": 3}, {"sku": "ink", "qty": 2}, {"sku": "pad", "qty": 5}],
}
PRICES = {"pen": 1.5, "ink": 4.0, "pad": 2.25}


async def main(clock: VirtualClock | None = None) -> dict[str, Any]:
    """Run one order through the pipeline; return the total and what happened when."""
    clock = clock or VirtualClock()
    timeline: list[tuple[float, str]] = []
    start = clock.now()

    def note(what: str) -> None:
        timeline.append((clock.now() - start, what))

    async with Runtime(clock=clock) as rt:
        items_queue = rt.queue("items")

        async def pipeline(job: Job) -> dict[str, Any]:
            step = job.data.get("step", "validate")
            if step == "validate":
                if not job.data["items"]:
                    raise ValueError("an order needs items")
                note("validated; waiting 5 minutes for approval")
                await job.move_to_delayed(clock.now() + APPROVAL_WAIT, next_step="spawn")
            if step == "spawn":
                note(f"approved; spawning {len(job.data['items'])} item jobs")
                for item in job.data["items"]:
                    await items_queue.add("price", item, parent=job)
                await job.update_data({**job.data, "step": "collect"})
                await job.move_to_waiting_children()
            note("collecting")
            values = await job.get_children_values()
            lines = sorted(values.values(), key=lambda line: str(line["sku"]))
            total = sum(line["amount"] for line in lines)
            return {"order": job.data["order"], "lines": lines, "total": total}

        async def price(job: Job) -> dict[str, Any]:
            await clock.sleep(job.data["qty"])  # a slow pricing service
            amount = PRICES[job.data["sku"]] * job.data["qty"]
            note(f"priced {job.data['sku']}: {amount}")
            return {"sku": job.data["sku"], "amount": amount}

        rt.worker("pipeline", pipeline)
        rt.worker(items_queue, price, concurrency=4)
        job = await rt.queue("pipeline").add("order", ORDER)
        result = await job.wait_until_finished()
        children = await items_queue.get_jobs()
        return {
            "result": result,
            "timeline": timeline,
            "steps_started": job.attempts_started,
            "finished_after": (job.finished_at or start) - start,
            "children": len(children),
            "children_done_by": max((c.finished_at or start) - start for c in children),
        }


def report(result: dict[str, Any]) -> None:
    for at, what in result["timeline"]:
        print(f"t={at:5.0f} s  {what}")
    out = result["result"]
    print(f"order {out['order']}: {len(out['lines'])} lines, total {out['total']}")
    print(f"{result['steps_started']} steps, done after {result['finished_after']:.0f} s")


if __name__ == "__main__":
    report(anyio.run(main))
