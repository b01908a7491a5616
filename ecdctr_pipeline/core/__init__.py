"""Core contracts every other package uses: the calendar (SPEC §2), settings, store paths, the
raw-log and feature schema, errors and report helpers. No I/O beyond reading settings."""
