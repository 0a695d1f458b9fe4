"""The router: decides, for every complete series in ``incoming/``, what happens to it.

- :mod:`mercure.router.service`: ``mercure router`` (the event loop, inotify)
- :mod:`mercure.router.router`: completion, rules and hand-over, without the event loop
- :mod:`mercure.router.tracker`: the waiting series and their deadlines
- :mod:`mercure.router.completion`: the quiet time of a series (overrides, release)
- :mod:`mercure.router.taskdocs`: the task.json documents
- :mod:`mercure.router.routing`: the crash-safe claim and hand-over of one series
- :mod:`mercure.router.studies`: study folders, and when a study is complete
- :mod:`mercure.router.collector`: the studies being collected, completed when due
- :mod:`mercure.router.cli`: ``mercure rule-test`` and ``mercure study`` (which rules fire
  and what that means: :mod:`mercure.core.rules.decision`, shared with the web interface)
- :mod:`mercure.router.simulate`: writes incoming/ as the receiver does (tests, benchmarks)

docs/router.md describes the behaviour for administrators.
"""
