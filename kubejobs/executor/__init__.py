"""The executor: Colonies processes in, Kubernetes Jobs out, outcomes back to Colonies.

Modules, one job each: settings (what the executor is told), identity (keys and
registration), admission (room for more work), apply (spec -> applied Job),
watch (list+watch of managed Jobs and pods), outcome (Job/pod status -> close or
fail), cleanup (deleting finished Jobs), takeback (processes the server took
back), loop (the threads that tie these together), health and metrics.
"""
