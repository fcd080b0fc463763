"""keras_mta.data (see ../ARCHITECTURE sketch in CONTRIBUTING.md)."""
