"""What every service shares: the data-folder and task protocol, configuration, events,
logging and the service frame. Services import core, never each other."""
