"""The inference service (HTTP) and the readers that workers use to reach it or run it in process."""

from gateway.inference.client import HttpReader, LocalReader, ReportReader, make_reader, result_from_json

__all__ = ["HttpReader", "LocalReader", "ReportReader", "make_reader", "result_from_json"]
