"""DuckDB integration: the `ml` SQL functions (vectorized Arrow UDFs behind macros) on a connection.

import duckdb, sqlml.udfs
con = duckdb.connect()
sqlml.udfs.register(con)          # embedded: models run in this process
con.sql("SELECT (ml.sentiment('great stuff')).label")
"""

from __future__ import annotations

from sqlml.udfs.duckdb_functions import client_of, refresh, register

__all__ = ["client_of", "refresh", "register"]
