"""``mercure notifier``: sends the notifications other services queue (webhook, e-mail, apprise)."""
