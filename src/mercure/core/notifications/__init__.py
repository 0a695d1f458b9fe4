"""Notifications: what the services queue, and the templates that turn it into a message.

- :mod:`~mercure.core.notifications.queue`: the durable queue in ``data_dir/notifications/``
  (one JSON file per notification and channel, written atomically by any service);
- :mod:`~mercure.core.notifications.triggers`: which of a task's rules notify which channels,
  for reception, completion and error (mercure's options, same meaning);
- :mod:`~mercure.core.notifications.templates`: the sandboxed Jinja2 templates, their fields,
  and the PHI switch of each channel.

``mercure notifier`` (:mod:`mercure.notifier`) sends what is queued, with retries.
"""
