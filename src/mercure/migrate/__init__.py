"""Moving an installation over from mercure 0.4.1: ``mercure import-config``.

- :mod:`.report`: what became of every key of the input (mapped, changed in meaning, not
  carried), the environment variables to set, and its text form;
- :mod:`.mercure_json`: mercure's ``mercure.json`` to a ``mercure.yaml`` document (the
  installation-wide keys), with :mod:`.targets`, :mod:`.modules` and :mod:`.rules` (rules and
  their notification channels) for the named entries and :mod:`.values` for how mercure writes
  values;
- :mod:`.users`: mercure's ``users.json`` to web-interface users;
- :mod:`.output`: the document as YAML with comments for the administrator.

docs/migrating-from-mercure.md is the guide for administrators.
"""

from mercure.migrate.mercure_json import ImportResult, import_mercure_config
from mercure.migrate.report import ImportReport, Outcome
from mercure.migrate.users import ImportedUser, import_mercure_users

__all__ = [
    "ImportReport",
    "ImportResult",
    "ImportedUser",
    "Outcome",
    "import_mercure_config",
    "import_mercure_users",
]
