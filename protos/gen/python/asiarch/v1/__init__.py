"""Generated stubs of the asiarch v1 contract (make proto)."""
