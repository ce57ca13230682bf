"""Iceberg tables, branches, write-audit-publish and DuckDB audits.

This package knows tables and branches, never assets or schedules: it must not import
`orchestrator`.
"""

from lakehouse.errors import (
    AuditQueryError as AuditQueryError,
)
from lakehouse.errors import (
    BranchError as BranchError,
)
from lakehouse.errors import (
    ConfigError as ConfigError,
)
from lakehouse.errors import (
    PublishConflictError as PublishConflictError,
)
from lakehouse.errors import (
    SchemaChangeError as SchemaChangeError,
)
from lakehouse.errors import (
    SluiceError as SluiceError,
)
from lakehouse.errors import (
    UnsupportedTypeError as UnsupportedTypeError,
)
