"""Operating the engine: retention (purge), the runs CLI's queries, metrics and log context.

Nothing here is imported by the engine's hot path; each module is loaded by the command, view or maintenance
step that uses it, and only when configured.
"""
