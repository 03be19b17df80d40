"""The durable study pipeline: stability, job claims under a lease, retries and the dead letter."""
