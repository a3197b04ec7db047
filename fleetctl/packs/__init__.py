"""osquery packs: the model, reading and writing pack files, validation and conversion.

Exceptions:

    ValueError
    ├── PackFormatError       content that cannot become a Pack (loader)
    ├── ConvertError          input that is neither osquery JSON nor FleetDM YAML (convert)
    └── UnknownPlatformError  a ``platform`` word osquery does not know (model)

Validation never raises for problems in a pack; it returns ``ValidationError`` records.
"""

from __future__ import annotations

from fleetctl.packs.convert import Conversion, ConvertError, convert_file
from fleetctl.packs.loader import (
    PackFormatError,
    dumps,
    load_file,
    loads,
    pack_files,
    shipped_packs_dir,
)
from fleetctl.packs.model import Pack, ScheduledQuery, UnknownPlatformError, parse_platforms
from fleetctl.packs.validate import (
    Report,
    ValidationError,
    validate_file,
    validate_paths,
    validate_text,
)

__all__ = [
    "Conversion",
    "ConvertError",
    "Pack",
    "PackFormatError",
    "Report",
    "ScheduledQuery",
    "UnknownPlatformError",
    "ValidationError",
    "convert_file",
    "dumps",
    "load_file",
    "loads",
    "pack_files",
    "parse_platforms",
    "shipped_packs_dir",
    "validate_file",
    "validate_paths",
    "validate_text",
]
