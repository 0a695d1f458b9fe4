"""The bookkeeper: the monitoring database of mercure-router and its HTTP API.

Every service writes events to its durable outbox (:mod:`mercure.core.events`); the outbox
deliverer (:mod:`mercure.core.delivery`) posts them here in batches. The bookkeeper stores each
event once (idempotent by event id) and projects them into series, tasks (with every version of
``task.json``), per-target dispatch state, processing results and the web audit log, which the
read API searches. See ``docs/bookkeeper.md`` for the event-kind contract.
"""
