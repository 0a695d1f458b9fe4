"""The dispatcher: sends the tasks in ``outgoing/`` to their targets, then ``success/`` or
``error/``. Target types are plug-ins (:mod:`mercure.dispatcher.targets`)."""
