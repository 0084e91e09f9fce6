"""Tasks: a backbone, a task head and the shared state (`base.TransferTask`)."""
