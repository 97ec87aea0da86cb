"""A Jupyter runbook that sets up a Salesforce Connected App for a Dev Hub org, end to end.

The phases, one module each: ``certificate`` (key pair), ``connected_app`` (the app),
``access`` (policies and pre-authorized profiles / permission sets), ``verify`` (JWT login and
hand-off). ``org`` connects to an org, ``batch`` runs the notebooks, ``localorg`` is the
emulated Dev Hub used by default and by the tests.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sf-connected-app-runbook")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0"

__all__ = ["__version__"]
