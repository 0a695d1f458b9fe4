"""The shipped de-identification module (DICOM PS3.15 Basic Profile), a ``command`` module.

Run it as ``python -m mercure.modules.deidentify`` with the module interface
(``MERCURE_IN_DIR``, ``MERCURE_OUT_DIR``); see docs/modules.md.
"""
