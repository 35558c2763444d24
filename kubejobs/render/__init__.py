"""Rendering: function spec + settings -> template context -> Jinja -> parsed manifests -> injection."""

from kubejobs.render.identity import default_process_id, job_name
from kubejobs.render.manifest import Renderer
from kubejobs.render.settings import RenderSettings

__all__ = ["RenderSettings", "Renderer", "default_process_id", "job_name"]
