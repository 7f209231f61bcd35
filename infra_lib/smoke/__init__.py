"""Fast end-to-end checks of a deployed stack, with each service's own credentials.

:func:`infra_lib.smoke.runner.run_smoke` runs the checks and returns a
:class:`~infra_lib.smoke.runner.SmokeReport` that prints as a table and
writes JUnit XML. Drivers are imported by the checks that need them.
"""
