"""Tasks: a backbone, a task head and the shared training state (`base.TransferTask`)."""
