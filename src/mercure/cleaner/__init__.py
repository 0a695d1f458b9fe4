"""The cleaner: retention of finished tasks (success/, discard/, error/) and disk-pressure relief.

- :mod:`mercure.cleaner.retained`: what a retained task is, when it entered its stage, its size
- :mod:`mercure.cleaner.policy`: which tasks are due (retention by age, disk-pressure order)
- :mod:`mercure.cleaner.diskusage`: how full the data filesystem is (``statvfs``)
- :mod:`mercure.cleaner.removal`: claim, hide (``.deleting-<name>``), delete; finish leftovers
- :mod:`mercure.cleaner.cleaner`: one cleaning pass, shared by the service and ``mercure clean``
- :mod:`mercure.cleaner.service`: the ``cleaner`` service
- :mod:`mercure.cleaner.cli`: ``mercure clean [--dry-run] [--ignore-window]``
"""
