"""keras_mta.cli (see ../ARCHITECTURE sketch in CONTRIBUTING.md)."""
