"""Staff-only report pages inside the Django admin: long-tail exposure, behaviour, models, experiments.

Each page is a plain view in its own module (``exposure.py``, ``behaviour.py``, ...), listed in
``urls.py`` and linked from the admin index. Views only read parameters, call the report or
service functions and hand :class:`~.base.Table` and :class:`~.charts.Chart` objects to the
templates; every table can be downloaded as CSV with ``?csv=<table name>``.
"""
