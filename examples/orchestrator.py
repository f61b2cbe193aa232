"""Dynamic children: a parent job spawns one child per chunk, waits, and merges their values.

The parent adds its children with ``parent=job``, then ``await job.move_to_waiting_children()``:
the processor unwinds, and runs again once the last child has finished. On that second run
``get_children_values()`` holds every child's return value, keyed by child id.

Run it: ``python examples/orchestrator.py``
"""

from __future__ import annotations

from typing import Any

import anyio

from actorq import Job, Runtime, VirtualClock

TEXT = (
    "the quick brown fox jumps over the lazy dog and the dog sleeps while the fox runs "
    "away into the quiet green forest where the trees stand tall"
)
CHUNK = 6  # words per child


async def main(clock: VirtualClock | None = None) -> dict[str, Any]:
    """Count words with one child job per chunk; return the merged counts and a timeline."""
    clock = clock or VirtualClock()
    timeline: list[tuple[float, str]] = []

    async with Runtime(clock=clock) as rt:
        subtasks = rt.queue("subtasks")

        async def orchestrate(job: Job) -> dict[str, Any]:
            step = job.data.get("step", "spawn")
            timeline.append((clock.now(), f"parent runs at step {step!r}"))
            if step == "spawn":
                words = job.data["text"].split()
                for i in range(0, len(words), CHUNK):
                    await subtasks.add("count", {"words": words[i : i + CHUNK]}, parent=job)
                await job.update_data({**job.data, "step": "merge"})
                timeline.append((clock.now(), "parent waits for its children"))
                await job.move_to_waiting_children()  # unwinds: children are pending
            values = await job.get_children_values()
            merged: dict[str, int] = {}
            for counts in values.values():
                for word, n in counts.items():
                    merged[word] = merged.get(word, 0) + n
            return {"children": len(values), "counts": dict(sorted(merged.items()))}

        async def count(job: Job) -> dict[str, int]:
            words: list[str] = job.data["words"]
            await clock.sleep(len(words[0]))  # some chunks take longer than others
            out: dict[str, int] = {}
            for word in words:
                out[word] = out.get(word, 0) + 1
            timeline.append((clock.now(), f"child {job.id} counted {len(words)} words"))
            return out

        rt.worker("orchestrator", orchestrate)
        rt.worker(subtasks, count, concurrency=4)
        parent = await rt.queue("orchestrator").add("word-count", {"text": TEXT})
        merged = await parent.wait_until_finished()
        children = await subtasks.get_jobs()
        return {
            "merged": merged,
            "parent_id": parent.id,
            "parent_runs": parent.attempts_started,
            "parent_second_start": parent.processed_at,
            "children_finished_at": {c.id: c.finished_at for c in children},
            "children_parent_ids": sorted({c.parent_id for c in children if c.parent_id}),
            "timeline": timeline,
        }


def report(result: dict[str, Any]) -> None:
    for at, what in result["timeline"]:
        print(f"t={at:4.0f} s  {what}")
    merged = result["merged"]
    top = sorted(merged["counts"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    print(f"merged {merged['children']} children; most frequent: {top}")
    print(f"parent ran {result['parent_runs']} times")


if __name__ == "__main__":
    report(anyio.run(main))
