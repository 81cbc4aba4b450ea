"""sqlml: machine-learning predictions inside SQL.

The package is split along the architecture: `sqlml.bridge` hosts models (registry, runtimes,
model host, HTTP service, training), `sqlml.udfs` puts them into DuckDB and rewrites SQL, and
`sqlml.data` loads the offline demo data sets. `sqlml.errors` is the one error tree they share.
"""

from __future__ import annotations

__version__ = "0.1.0"
