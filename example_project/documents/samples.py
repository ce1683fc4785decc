"""Sample documents for the demo and the tests."""

SAMPLES = [
    {
        "title": "Durable pipelines",
        "text": (
            "A workflow engine runs pipelines as stages. Each stage is durable: its output is stored, so a crash "
            "never loses finished work. Stages run in parallel when they do not depend on each other, and the "
            "engine retries a failed stage before it gives up on the run."
        ),
    },
    {
        "title": "The database is the source of truth",
        "text": (
            "Every run, stage and job is a row in the database. Workers claim jobs with short transactions, and "
            "a lease tells the maintenance loop which jobs are still alive! Redis only rings the doorbell; if it "
            "loses a message, the database still knows the job is due."
        ),
    },
    {
        "title": "Typed stages",
        "text": (
            "Pydantic models describe what each stage takes and returns. Invalid input is refused before a run "
            "exists, with a message naming the field. Typed outputs make the admin readable and the pipeline "
            "safe to change?"
        ),
    },
]
