"""The receiver: a DICOM Storage SCP that places every instance durably in ``incoming/``."""
