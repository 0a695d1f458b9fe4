"""mercure-router: a DICOM routing and processing server."""

__version__ = "0.1.0"
