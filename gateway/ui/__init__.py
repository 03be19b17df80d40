"""The review page at ``/ui``: worklist, study view, link corrections and draft approval."""
