"""The SQLSTATE each bridge error code (sqlml/errors.py) raises in PostgreSQL.

The PostgreSQL helper raises a bridge failure with this SQLSTATE, so that client code can tell a
missing model (42704) from a refused token (28000) or a timeout (57014). A drift test
(tests/security/test_name_rules.py) fails when the bridge gains an error code that is missing here,
and docs/postgres.md's table is compared with it. Standard library only: the PostgreSQL helper is
built with this module.
"""

from __future__ import annotations

# Bridge error codes -> SQLSTATE. Failures on the database's side use the pseudo-codes at the end.
SQLSTATES: dict[str, str] = {
    "bad_request": "22023",  # invalid_parameter_value
    "invalid_name": "42602",  # invalid_name
    "invalid_input": "22023",  # invalid_parameter_value
    "unauthorized": "28000",  # invalid_authorization_specification
    "forbidden": "42501",  # insufficient_privilege
    "not_found": "42704",  # undefined_object
    "model_not_found": "42704",
    "version_not_found": "42704",
    "conflict": "55000",  # object_not_in_prerequisite_state
    "payload_too_large": "54000",  # program_limit_exceeded
    "method_not_allowed": "0A000",
    "unsupported_media_type": "0A000",
    "not_supported": "0A000",  # feature_not_supported
    "model_load_failed": "58000",  # system_error
    "store_corrupt": "XX001",  # data_corrupted
    "store_unwritable": "58030",  # io_error
    "unavailable": "08006",  # connection_failure
    "timeout": "57014",  # query_canceled, what statement_timeout raises too
    "training_failed": "38000",  # external_routine_exception
    "internal_error": "XX000",
    # raised on this side of the wire
    "bridge_unreachable": "08001",  # sqlclient_unable_to_establish_sqlconnection
    "bad_response": "08P01",  # protocol_violation
    "invalid_setting": "22023",
    "invalid_query": "42601",  # syntax_error
}
