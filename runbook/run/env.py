"""The environment `runbook run` gives its kernels: what the phase code may read there (never a secret)."""

# Set (to "1") in the environment of the kernels `runbook run` starts: no frontend will ever show a form there.
BATCH_ENV = "RUNBOOK_BATCH"
