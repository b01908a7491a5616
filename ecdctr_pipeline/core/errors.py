"""Domain errors. Every error the CLI reports is one line naming what is wrong."""

from __future__ import annotations


class EcdctrError(Exception):
    """Base class: its message is shown to the user as one line, exit status ``exit_code``."""

    exit_code = 2

    def __str__(self) -> str:  # one line, always
        return " ".join(super().__str__().split())


class ConfigError(EcdctrError):
    """A setting is unknown, of the wrong type, or impossible. The message names the key."""


class CalendarError(EcdctrError):
    """A date is not valid for the tier asked (e.g. a CPM run on a Tuesday)."""


class OverlapError(CalendarError):
    """An embedding set's months overlap the training window that would consume it."""


class ArtifactMissingError(EcdctrError):
    """An artifact has no manifest: it is absent (possibly still being written)."""


class NotReadyError(ArtifactMissingError):
    """What a sensor waits for is not there yet (``ecdctr check``): exit 75, EX_TEMPFAIL."""

    exit_code = 75


class UsageError(EcdctrError):
    """A command line the CLI's parser rejects (a step's argv run in-process)."""


class CorruptArtifactError(EcdctrError):
    """A published file does not match the checksum or size its manifest records."""


class StoreError(EcdctrError):
    """The store root or an operation on it is invalid."""


class DeltaError(EcdctrError):
    """A Delta table operation failed (missing table, schema mismatch, ...)."""
