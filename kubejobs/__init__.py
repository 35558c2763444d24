"""kubejobs: run ColonyOS function specs as Kubernetes batch Jobs."""

__version__ = "0.1.0"
