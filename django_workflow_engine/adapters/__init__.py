"""Django implementations of the kernel's ports.

``persistence.OrmPersistence`` and ``job_queue.OrmJobQueue`` (the ORM models), ``blobs.StorageBlobStore``
(Django's storage API), ``clock.SystemClock``, ``events.SignalEventSink`` and ``rq`` (the Redis doorbell).
Import the modules directly: they need the app registry to be ready.
"""
