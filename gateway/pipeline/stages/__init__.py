"""Pipeline stages. The order they run in is declared once, in :mod:`gateway.pipeline.table`."""
