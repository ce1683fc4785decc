"""The benchmark workflow: ``pipe(a).parallel([b, c]).pipe(d)`` of no-op stages (4 stages, 3 groups).

The stages take no input schema and return an empty dict, so the measured cost is the engine's own.
"""

from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage


@define_stage(id="a", name="A")
def bench_a(ctx):
    return {}


@define_stage(id="b", name="B")
def bench_b(ctx):
    return {}


@define_stage(id="c", name="C")
def bench_c(ctx):
    return {}


@define_stage(id="d", name="D")
def bench_d(ctx):
    return {}


bench = (
    WorkflowBuilder("bench", "Benchmark", "a then b||c then d (no-op stages)")
    .pipe(bench_a)
    .parallel([bench_b, bench_c])
    .pipe(bench_d)
    .build()
)


# The same stages under a concurrency limit, for throughput with and without one (``throughput.py --workflow``):
# ten runs per key, keys spread over the runs' ``n`` input, so the limit is reached and handed over constantly.
def _bench_key(data: dict) -> str:
    return f"k{int(data.get('n', 0)) % 10}"


bench_limited = (
    WorkflowBuilder(
        "bench-limited",
        "Benchmark, limited",
        "a then b||c then d (no-op stages), at most 2 runs at once per key of 10",
        max_concurrent_runs=2,
        concurrency_key=_bench_key,
    )
    .pipe(bench_a)
    .parallel([bench_b, bench_c])
    .pipe(bench_d)
    .build()
)


# Three sequential no-op stages: the shape the peers of ``live.py`` run (a Celery chain of three tasks, a DBOS
# workflow of three steps).
bench_seq3 = (
    WorkflowBuilder("bench-seq3", "Benchmark, sequential", "a then b then c (no-op stages)")
    .pipe(bench_a)
    .pipe(bench_b)
    .pipe(bench_c)
    .build()
)


# A map of no-op items (``fanout.py``): a stage makes the list, one no-op stage per item, a stage reads the outputs.
class MapInput(BaseModel):
    n: int = 10_000


@define_stage(id="m_split", name="Make the items", input=MapInput)
def bench_m_split(ctx):
    return list(range(ctx.input.n))


@define_stage(id="m_item", name="One item")
def bench_m_item(ctx):
    return ctx.input


@define_stage(id="m_join", name="Count the outputs")
def bench_m_join(ctx):
    return {"items": len(ctx.workflow_context["m_item"])}


bench_map = (
    WorkflowBuilder("bench-map", "Benchmark, map", "a list of n items, a no-op stage per item, a join")
    .pipe(bench_m_split)
    .map(bench_m_item)
    .pipe(bench_m_join)
    .build()
)
