"""``mercure worker``: runs processing and dispatch tasks fed through the Celery broker."""
