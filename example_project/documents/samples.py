"""Sample documents for the demo and the tests."""

SAMPLES = [
    {
        "title": "Durable pipelines",
        "text": (
            "A workflow engine runs pipelines as stages. Each stage is durable: the engine stores its output, so a "
            "crash never loses a finished stage. Stages run in parallel when they do not depend on each other, and "
            "the engine retries a failed stage before the workflow gives up."
        ),
    },
    {
        "title": "The database is the source of truth",
        "text": (
            "Every run, stage and job is a row in the database. Workers claim a job with a short transaction, and "
            "a lease on the job tells maintenance which workers are alive! Redis only rings the doorbell; if Redis "
            "loses a message, the database still knows the job is due."
        ),
    },
    {
        "title": "Typed stages",
        "text": (
            "Pydantic models describe what each stage takes and returns. Invalid input is refused before a run "
            "exists, with a message naming the field. Typed models make stage outputs readable in the admin, and "
            "typed stages make a pipeline safe to change. Why would a stage be untyped?"
        ),
    },
]
