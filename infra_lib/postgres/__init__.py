"""PostgreSQL: admin connection settings, SCRAM helpers and the provisioner.

Submodules import psycopg; this package module does not, so importing
``infra_lib.postgres.config`` stays cheap.
"""
