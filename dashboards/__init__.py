"""Superset dashboards as code: assets in Superset's export format, its config, and provisioning."""
