"""The receiver: a DICOM Storage SCP, and optionally a STOW-RS endpoint, that place every
instance durably in ``incoming/``."""
