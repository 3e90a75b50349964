"""Names of :mod:`pipeline.ingest`, for type checkers and for the lazy loader that reads this stub."""

from .discovery import (
    BOOKKEEPING as BOOKKEEPING,
    CACHEDIR_SIGNATURE as CACHEDIR_SIGNATURE,
    DATA_SUFFIXES as DATA_SUFFIXES,
    Discovery as Discovery,
    Skipped as Skipped,
    discover as discover,
    file_sha256 as file_sha256,
    is_data_file as is_data_file,
    sniff_format as sniff_format,
    survey as survey,
)
from .formats import (
    ADAPTERS as ADAPTERS,
    by_name as by_name,
)
from .outcomes import outcomes_from_feedback as outcomes_from_feedback
from .reader import (
    STORE_VERSION as STORE_VERSION,
    ingest as ingest,
    record_sha256 as record_sha256,
)
from .schema import (
    FEEDBACK as FEEDBACK,
    OUTCOME_LABELS as OUTCOME_LABELS,
    STEPS as STEPS,
    TABLES as TABLES,
    TRAJECTORIES as TRAJECTORIES,
    empty_table as empty_table,
    to_table as to_table,
)
from .store import (
    FileReport as FileReport,
    Traces as Traces,
)
