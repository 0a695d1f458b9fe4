"""Test frame of mercure-router: shared by the test suite and the bench/ scripts.

- :mod:`mercure.testing.wait`: ``wait_until`` / ``wait_until_async`` instead of sleeps
- :mod:`mercure.testing.ports`: ``free_port`` for servers on 127.0.0.1
- :mod:`mercure.testing.series`: deterministic DICOM series and studies (also a CLI)
- :mod:`mercure.testing.peers`: real DCMTK and Orthanc peers as subprocesses
- :mod:`mercure.testing.checks`: assertions about received files
- :mod:`mercure.testing.fixtures`: the pytest plugin that offers all of the above as fixtures
"""
