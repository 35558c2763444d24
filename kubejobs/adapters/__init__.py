"""Adapters to the servers kubejobs talks to. Only these modules import pycolonies or kubernetes."""
